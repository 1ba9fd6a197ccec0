package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * The command-line options that plugins declare ({@link BackendFactory#options()},
 * {@link FrontendFactory#options()}, {@link FilterFactory#options()}): each becomes {@code --KEY} of {@code jloop serve}, with the
 * plugin's help and example, so that a new plugin brings its options without a change here. A key
 * declared by several plugins is one option, given to each of them; a key that {@link ServeOptions}
 * already has (such as {@code --queue-depth}) is not added again, but its value goes to the plugins
 * that declare it too. An option given for a plugin that was not chosen is an error.
 */
final class PluginCli
{
    private final Map<String, List<String>> declaredBy = new LinkedHashMap<>();
    private final Map<String, OptionSpec> added = new LinkedHashMap<>();
    private final Map<String, PluginOption> byKey = new LinkedHashMap<>();

    /** Adds every declared option of every plugin to {@code serve}. */
    PluginCli(CommandSpec serve, Plugins plugins)
    {
        requireNonNull(serve, "serve is null");
        for (BackendFactory backend : plugins.backends().all()) {
            declare(serve, backend.options(), "the " + backend.name() + " backend");
        }
        for (FrontendFactory frontend : plugins.frontends().all()) {
            declare(serve, frontend.options(), "the " + frontend.name() + " frontend");
        }
        for (FilterFactory filter : plugins.filters().all()) {
            declare(serve, filter.options(), "the " + filter.name() + " filter");
        }
    }

    private void declare(CommandSpec serve, List<PluginOption> options, String plugin)
    {
        for (PluginOption option : options) {
            String name = "--" + option.key();
            declaredBy.computeIfAbsent(option.key(), key -> new ArrayList<>()).add(plugin);
            byKey.putIfAbsent(option.key(), option);
            if (added.containsKey(option.key()) || serve.findOption(name) != null) {
                continue;
            }
            String defaultText = option.defaultValue() == null || option.type() == PluginOption.Type.FLAG ? "" : " (default: " + option.defaultValue() + ")";
            OptionSpec.Builder builder = OptionSpec.builder(name)
                    .description(escape(plugin + ": " + option.help() + defaultText) + "%n  e.g. " + escape(option.example()));
            if (option.type() == PluginOption.Type.FLAG) {
                builder.arity("0").type(boolean.class);
            }
            else {
                builder.arity("1").type(String.class).paramLabel(switch (option.type()) {
                    case CHOICE -> String.join("|", option.choices());
                    case COUNT -> "N";
                    case STRING -> "TEXT";
                    default -> option.type().name();
                });
            }
            OptionSpec spec = builder.build();
            serve.addOption(spec);
            added.put(option.key(), spec);
        }
    }

    /** Help text as picocli formats it: a plugin's own '%' (as in "10%") is a literal. */
    private static String escape(String text)
    {
        return text.replace("%", "%%");
    }

    /**
     * The options of one plugin as the command line gives them: {@code --KEY} for each key it
     * declares, {@code generic} for keys of {@link ServeOptions}' own options (such as
     * {@code queue-depth}), and the options written after its name ({@code --backend NAME:KEY=VALUE}),
     * undeclared ones included so that the plugin's check refuses them by name.
     */
    Map<String, String> given(List<PluginOption> declared, Map<String, String> generic, PluginSpec spec)
    {
        Map<String, String> values = new LinkedHashMap<>();
        for (PluginOption option : declared) {
            String value = value(option.key());
            if (value == null) {
                value = generic.get(option.key());
            }
            if (value != null) {
                values.put(option.key(), value);
            }
        }
        for (Map.Entry<String, String> entry : spec.options().entrySet()) {
            if (values.containsKey(entry.getKey())) {
                throw new UserException(entry.getKey() + " is given twice, as --" + entry.getKey() + " and after " + spec.name() + ":");
            }
            values.put(entry.getKey(), entry.getValue());
        }
        return values;
    }

    /** Refuses a plugin option that was given although none of the chosen plugins declares it. */
    void checkGivenOnlyFor(List<PluginOption> chosen, String choice)
    {
        for (String key : added.keySet()) {
            if (value(key) != null && chosen.stream().noneMatch(option -> option.key().equals(key))) {
                throw new UserException("--" + key + " applies to " + String.join(" and ", declaredBy.get(key)) + " only, and " + choice);
            }
        }
    }

    private String value(String key)
    {
        OptionSpec spec = added.get(key);
        if (spec == null || spec.getValue() == null) {
            return null;
        }
        Object value = spec.getValue();
        if (value instanceof Boolean flag) {
            return flag ? "true" : null;
        }
        return value.toString();
    }
}
