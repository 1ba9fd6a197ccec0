package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Function;

/**
 * {@code jloop backends}, {@code jloop frontends} and {@code jloop filters}: what jloop can serve
 * with here, and where each came from, so that a plugin's author (or its user) sees whether it was
 * found, whether it works on this machine and which options it takes, as
 * {@code nbdkit --dump-plugin} does.
 */
final class ListCommands
{
    private static final String WHERE_PLUGINS_ARE = "Plugins are folders of jars: plugins/NAME/*.jar in the distribution, and NAME/*.jar in each "
            + "directory of " + PluginFolders.PATH_VARIABLE + " (colon-separated).";

    private ListCommands() {}

    @Command(name = "backends", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Lists the backends (--backend NAME), jloop's own and those of plugins.",
                    "",
                    "Each with where it comes from, its description, whether it works on this machine, its priority for "
                            + "--backend auto (the available backend with the highest wins; a negative one is never chosen "
                            + "by auto), and the options it adds to jloop serve.",
                    "",
                    WHERE_PLUGINS_ARE,
                    ""})
    static final class Backends
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;
        Plugins plugins;

        @Override
        public Integer call()
        {
            PrintWriter out = spec.commandLine().getOut();
            Registry<BackendFactory> backends = plugins.backends();
            boolean first = true;
            for (String name : backends.names()) {
                BackendFactory backend = backends.get(name);
                first = header(out, first, name, backends.origin(name), backend.description());
                out.println("    " + availability(backend) + ", auto priority " + backend.autoPriority());
                printOptions(out, backend.options());
            }
            out.flush();
            return 0;
        }

        private static String availability(BackendFactory backend)
        {
            try {
                String cause = backend.unavailabilityCause();
                return cause == null ? "available" : "not available: " + cause;
            }
            catch (RuntimeException | LinkageError e) {
                return "not available: its probe failed: " + PluginFolders.describe(e);
            }
        }
    }

    @Command(name = "frontends", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Lists the frontends (--frontend NAME), jloop's own and those of plugins.",
                    "",
                    "Each with where it comes from, its description, and the options it adds to jloop serve.",
                    "",
                    WHERE_PLUGINS_ARE,
                    ""})
    static final class Frontends
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;
        Plugins plugins;

        @Override
        public Integer call()
        {
            return list(spec, plugins.frontends(), FrontendFactory::description, FrontendFactory::options);
        }
    }

    @Command(name = "filters", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Lists the filters (--filter NAME), jloop's own and those of plugins.",
                    "",
                    "Each with where it comes from, its description, and the options it adds to jloop serve.",
                    "",
                    WHERE_PLUGINS_ARE,
                    ""})
    static final class Filters
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;
        Plugins plugins;

        @Override
        public Integer call()
        {
            return list(spec, plugins.filters(), FilterFactory::description, FilterFactory::options);
        }
    }

    /** A plugin's first two lines, after a blank line unless it is the first; returns false. */
    /** Each plugin of {@code registry}: its header, then its options. */
    private static <F> int list(CommandSpec spec, Registry<F> registry, Function<F, String> description, Function<F, List<PluginOption>> options)
    {
        PrintWriter out = spec.commandLine().getOut();
        boolean first = true;
        for (String name : registry.names()) {
            F factory = registry.get(name);
            first = header(out, first, name, registry.origin(name), description.apply(factory));
            printOptions(out, options.apply(factory));
        }
        out.flush();
        return 0;
    }

    private static boolean header(PrintWriter out, boolean first, String name, String origin, String description)
    {
        if (!first) {
            out.println();
        }
        out.println(name + " (" + (origin.equals(Registry.BUILT_IN) ? origin : "plugin " + origin) + ")");
        out.println("    " + description);
        return false;
    }

    /** Each option as {@code jloop serve} takes it: the flag, then type and default, help, example. */
    private static void printOptions(PrintWriter out, List<PluginOption> options)
    {
        if (options.isEmpty()) {
            out.println("    no options");
            return;
        }
        for (PluginOption option : options) {
            String type = option.type().name().toLowerCase(Locale.ROOT);
            out.println("    --" + option.key() + switch (option.type()) {
                case FLAG -> "";
                case CHOICE -> " " + String.join("|", option.choices());
                case COUNT -> " N";
                case STRING -> " TEXT";
                default -> " " + option.type().name();
            });
            String defaultText = option.defaultValue() == null ? "no default" : "default " + option.defaultValue();
            out.println("        " + type + ", " + defaultText + ": " + option.help());
            out.println("        e.g. " + option.example());
        }
    }
}
