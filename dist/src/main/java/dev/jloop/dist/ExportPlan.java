package dev.jloop.dist;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;

import static java.util.Objects.requireNonNull;

/**
 * What one export is made of, checked before any file is created: the backend's config (as the
 * user asked for it, and as the filters need the file opened) and its filters with their options,
 * the command line's for all exports merged with the export's own.
 *
 * @param asked the file as the user asked for it
 * @param open the file as the backend opens it, after every filter's {@link FilterFactory#configureBackend}
 * @param filters the first closest to the frontend
 */
record ExportPlan(ExportSpec spec, BackendConfig asked, BackendConfig open, List<ChosenPlugins.Filter> filters)
{
    ExportPlan
    {
        requireNonNull(spec, "spec is null");
        requireNonNull(asked, "asked is null");
        requireNonNull(open, "open is null");
        filters = List.copyOf(filters);
    }

    /**
     * Plans {@code spec}: its {@code filter=NAME}s come after (below) the {@code --filter}s, and each
     * of its {@code KEY=VALUE}s goes to every chosen plugin that declares the key.
     */
    static ExportPlan plan(ExportSpec spec, ChosenPlugins plugins, Map<String, FilterFactory> known, boolean readOnly, boolean direct, int queueDepth)
    {
        List<ChosenPlugins.Filter> filters = new ArrayList<>(plugins.filters());
        for (String name : spec.filters()) {
            FilterFactory factory = known.get(name);
            if (factory == null) {
                throw new UserException("--export " + spec.name() + ": unknown filter '" + name + "'; known filters: "
                        + String.join(", ", known.keySet().stream().sorted().toList()));
            }
            filters.add(new ChosenPlugins.Filter(factory, Map.of()));
        }
        Set<String> taken = new HashSet<>(keys(plugins.backend().options()));
        filters.forEach(filter -> taken.addAll(keys(filter.factory().options())));
        for (String key : spec.pluginOptions().keySet()) {
            if (!taken.contains(key)) {
                throw new UserException("--export " + spec.name() + ": " + key + " is an option of none of the chosen backend and filters ("
                        + String.join(", ", new TreeSet<>(taken)) + ")");
            }
        }
        try {
            Map<String, String> backendOptions = withOwn(plugins.backendOptions(), plugins.backend().options(), spec.pluginOptions());
            PluginOptions.parse("the " + plugins.backend().name() + " backend", plugins.backend().options(), backendOptions);
            List<ChosenPlugins.Filter> planned = new ArrayList<>();
            for (ChosenPlugins.Filter filter : filters) {
                Map<String, String> filterOptions = withOwn(filter.options(), filter.factory().options(), spec.pluginOptions());
                filter.factory().validate(filterOptions);
                planned.add(new ChosenPlugins.Filter(filter.factory(), filterOptions));
            }
            BackendConfig asked = new BackendConfig(spec.file(), readOnly || spec.readOnly(), direct, queueDepth, backendOptions);
            BackendConfig open = asked;
            // the filter closest to the backend says last how the file is opened
            for (ChosenPlugins.Filter filter : planned) {
                open = filter.factory().configureBackend(open, filter.options());
            }
            return new ExportPlan(spec, asked, open, planned);
        }
        catch (IllegalArgumentException e) {
            throw new UserException("--export " + spec.name() + ": " + e.getMessage(), e);
        }
    }

    /** {@code common}, with the export's values of the keys {@code declared} names. */
    private static Map<String, String> withOwn(Map<String, String> common, List<PluginOption> declared, Map<String, String> own)
    {
        Map<String, String> merged = new LinkedHashMap<>(common);
        for (String key : keys(declared)) {
            if (own.containsKey(key)) {
                merged.put(key, own.get(key));
            }
        }
        return merged;
    }

    private static Set<String> keys(List<PluginOption> declared)
    {
        return declared.stream().map(PluginOption::key).collect(Collectors.toSet());
    }
}
