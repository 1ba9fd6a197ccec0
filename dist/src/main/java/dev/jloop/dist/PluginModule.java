package dev.jloop.dist;

import com.google.inject.AbstractModule;
import com.google.inject.multibindings.MapBinder;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendFactory;

import static java.util.Objects.requireNonNull;

/**
 * What one plugin brings to the injector: its factory, under its name, in the map of backends, of
 * frontends or of filters ({@link MapBinder}), where {@link ServeModule} chooses from. The plugin itself knows
 * nothing of Guice: like a Trino connector it offers a factory through {@link java.util.ServiceLoader},
 * and jloop wraps it here, so that a plugin needs no dependency beyond {@code jloop-api}, and a test
 * puts a fake in a plugin's place by installing its module instead. Two plugins of one name are an
 * error, here as in {@link Registry}.
 */
final class PluginModule
        extends AbstractModule
{
    private final BackendFactory backend;
    private final FrontendFactory frontend;
    private final FilterFactory filter;

    private PluginModule(BackendFactory backend, FrontendFactory frontend, FilterFactory filter)
    {
        this.backend = backend;
        this.frontend = frontend;
        this.filter = filter;
    }

    static PluginModule backend(BackendFactory factory)
    {
        return new PluginModule(requireNonNull(factory, "factory is null"), null, null);
    }

    static PluginModule frontend(FrontendFactory factory)
    {
        return new PluginModule(null, requireNonNull(factory, "factory is null"), null);
    }

    static PluginModule filter(FilterFactory factory)
    {
        return new PluginModule(null, null, requireNonNull(factory, "factory is null"));
    }

    @Override
    protected void configure()
    {
        if (backend != null) {
            MapBinder.newMapBinder(binder(), String.class, BackendFactory.class).addBinding(backend.name()).toInstance(backend);
        }
        if (frontend != null) {
            MapBinder.newMapBinder(binder(), String.class, FrontendFactory.class).addBinding(frontend.name()).toInstance(frontend);
        }
        if (filter != null) {
            MapBinder.newMapBinder(binder(), String.class, FilterFactory.class).addBinding(filter.name()).toInstance(filter);
        }
    }

    // One module per plugin instance: Guice must not take two plugins for the same module.
    @Override
    public boolean equals(Object other)
    {
        return this == other;
    }

    @Override
    public int hashCode()
    {
        return System.identityHashCode(this);
    }
}
