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
        return new Plugins(
                Registry.load("backend", BackendFactory.class, BackendFactory::name),
                Registry.load("frontend", FrontendFactory.class, FrontendFactory::name),
                Registry.load("filter", FilterFactory.class, FilterFactory::name));
    }
}
