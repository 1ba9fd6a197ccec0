package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendFactory;

import static java.util.Objects.requireNonNull;

/** Every plugin jloop found, by kind. */
record Plugins(Registry<BackendFactory> backends, Registry<FrontendFactory> frontends, Registry<FilterFactory> filters)
{
    Plugins
    {
        requireNonNull(backends, "backends is null");
        requireNonNull(frontends, "frontends is null");
        requireNonNull(filters, "filters is null");
    }

    /** The plugins on jloop's class path. */
    static Plugins load()
    {
        return load(PluginFolders.none());
    }

    /**
     * The plugins on jloop's class path, then those of the plugin folders. A plugin's factory is asked
     * at once what every command asks of it (its description and options), so that one that fails
     * there is left out with the others of its folder instead of stopping jloop.
     */
    static Plugins load(PluginFolders folders)
    {
        return new Plugins(
                Registry.load("backend", BackendFactory.class, BackendFactory::name, backend -> {
                    backend.description();
                    backend.options();
                }, folders),
                Registry.load("frontend", FrontendFactory.class, FrontendFactory::name, frontend -> {
                    frontend.description();
                    frontend.options();
                }, folders),
                Registry.load("filter", FilterFactory.class, FilterFactory::name, filter -> {
                    filter.description();
                    filter.options();
                }, folders));
    }
}
