package dev.jloop.dist;

import com.google.inject.AbstractModule;
import com.google.inject.Module;
import com.google.inject.Provides;
import com.google.inject.Scopes;
import com.google.inject.Singleton;
import com.google.inject.multibindings.MapBinder;
import com.google.inject.multibindings.OptionalBinder;
import com.google.inject.util.Modules;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * How a {@code jloop serve} is put together: the plugins' factories arrive by name through
 * {@link PluginModule}s; this module chooses the backend and the frontend the options name, has each
 * check its own options, and binds the server and the {@link Lifecycle} that stops it. The one place
 * where plugins are chosen; a test replaces a plugin by installing another {@link PluginModule}.
 */
final class ServeModule
        extends AbstractModule
{
    private static final Logger log = LoggerFactory.getLogger(ServeModule.class);

    private final ServeOptions options;
    private final PluginCli pluginCli;

    ServeModule(ServeOptions options, PluginCli pluginCli)
    {
        this.options = requireNonNull(options, "options is null");
        this.pluginCli = requireNonNull(pluginCli, "pluginCli is null");
    }

    /** This module with one {@link PluginModule} per plugin. */
    static Module withPlugins(ServeOptions options, PluginCli pluginCli, Plugins plugins)
    {
        List<Module> modules = new ArrayList<>();
        modules.add(new ServeModule(options, pluginCli));
        plugins.backends().all().forEach(backend -> modules.add(PluginModule.backend(backend)));
        plugins.frontends().all().forEach(frontend -> modules.add(PluginModule.frontend(frontend)));
        plugins.filters().all().forEach(filter -> modules.add(PluginModule.filter(filter)));
        if (options.metrics != null) {
            modules.add(new PrometheusModule(options.metrics));
        }
        return Modules.combine(modules);
    }

    @Override
    protected void configure()
    {
        bind(ServeOptions.class).toInstance(options);
        bind(PluginCli.class).toInstance(pluginCli);
        // declared here so that the maps exist even when no plugin of a kind is installed
        MapBinder.newMapBinder(binder(), String.class, BackendFactory.class);
        MapBinder.newMapBinder(binder(), String.class, FrontendFactory.class);
        MapBinder.newMapBinder(binder(), String.class, FilterFactory.class);
        // bound by PrometheusModule under --metrics only
        OptionalBinder.newOptionalBinder(binder(), MetricsExporter.class);
        bind(Lifecycle.class).in(Scopes.SINGLETON);
        bind(JloopServer.class).in(Scopes.SINGLETON);
    }

    /**
     * The backend and frontend of {@code --backend} and {@code --frontend}, their options taken from
     * the command line and checked by each plugin before any file is created.
     */
    @Provides
    @Singleton
    static ChosenPlugins choose(Map<String, BackendFactory> backends, Map<String, FilterFactory> filters, Map<String, FrontendFactory> frontends,
            ServeOptions options, PluginCli pluginCli)
    {
        PluginSpec backendSpec = PluginSpec.parse("--backend", options.backend);
        boolean auto = backendSpec.name().equals("auto");
        if (auto && !backendSpec.options().isEmpty()) {
            throw new UserException("--backend auto takes no options: name the backend they are for, e.g. --backend io_uring:uring-sqpoll");
        }
        BackendFactory backend = auto ? auto(backends.values()) : available(lookup("backend", backends, backendSpec.name()));
        PluginSpec frontendSpec = PluginSpec.parse("--frontend", options.frontend);
        FrontendFactory frontend = lookup("frontend", frontends, frontendSpec.name());
        List<PluginSpec> filterSpecs = options.filters.stream().map(text -> PluginSpec.parse("--filter", text)).toList();
        List<FilterFactory> chosenFilters = filterSpecs.stream().map(spec -> lookup("filter", filters, spec.name())).toList();

        List<PluginOption> chosen = new ArrayList<>(backend.options());
        chosen.addAll(frontend.options());
        chosenFilters.forEach(filter -> chosen.addAll(filter.options()));
        List<ChosenPlugins.Filter> named = chosenFilters.stream().map(filter -> new ChosenPlugins.Filter(filter, Map.of())).toList();
        pluginCli.checkGivenOnlyFor(chosen, new ChosenPlugins(backend, Map.of(), auto, named, frontend, FrontendConfig.of(Map.of())).describe());

        Map<String, String> generic = options.queueDepth == null ? Map.of() : Map.of("queue-depth", options.queueDepth.toString());
        Map<String, String> backendOptions = pluginCli.given(backend.options(), generic, backendSpec);
        List<ChosenPlugins.Filter> withOptions = new ArrayList<>();
        for (int i = 0; i < chosenFilters.size(); i++) {
            withOptions.add(new ChosenPlugins.Filter(chosenFilters.get(i), pluginCli.given(chosenFilters.get(i).options(), generic, filterSpecs.get(i))));
        }
        FrontendConfig frontendConfig = new FrontendConfig(pluginCli.given(frontend.options(), generic, frontendSpec), options.run != null);
        try {
            PluginOptions.parse("the " + backend.name() + " backend", backend.options(), backendOptions);
            for (ChosenPlugins.Filter filter : withOptions) {
                filter.factory().validate(filter.options());
            }
            frontend.validate(frontendConfig);
        }
        catch (IllegalArgumentException e) {
            throw new UserException(e.getMessage(), e);
        }
        return new ChosenPlugins(backend, backendOptions, auto, withOptions, frontend, frontendConfig);
    }

    /** The factory called {@code name}; an error listing the known names if there is none. */
    private static <F> F lookup(String kind, Map<String, F> factories, String name)
    {
        F factory = factories.get(name);
        if (factory == null) {
            throw new UserException("unknown " + kind + " '" + name + "'; known " + kind + "s: " + String.join(", ", factories.keySet().stream().sorted().toList()));
        }
        return factory;
    }

    private static BackendFactory available(BackendFactory factory)
    {
        String cause = factory.unavailabilityCause();
        if (cause != null) {
            throw new UserException("backend '" + factory.name() + "' is not available here: " + cause);
        }
        return factory;
    }

    /**
     * The available backend with the highest priority; says why faster ones were passed over. A
     * negative priority keeps a backend out ({@link BackendFactory#autoPriority()}).
     */
    static BackendFactory auto(Collection<BackendFactory> backends)
    {
        List<BackendFactory> candidates = backends.stream()
                .filter(factory -> factory.autoPriority() >= 0)
                .sorted(Comparator.comparingInt(BackendFactory::autoPriority).reversed().thenComparing(BackendFactory::name))
                .toList();
        for (BackendFactory factory : candidates) {
            String cause = factory.unavailabilityCause();
            if (cause == null) {
                return factory;
            }
            log.info("backend {} is not available, falling back: {}", factory.name(), cause);
        }
        throw new UserException("no backend is available for --backend auto; known backends: "
                + String.join(", ", backends.stream().map(BackendFactory::name).sorted().toList()) + " (choose one by name with --backend NAME)");
    }
}
