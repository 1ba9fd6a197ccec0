package dev.jloop.dist;

import com.google.inject.AbstractModule;
import com.google.inject.Provides;
import com.google.inject.Scopes;
import com.google.inject.Singleton;
import com.google.inject.TypeLiteral;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.FrontendFactory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Comparator;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * The one place where the backend and the frontend are chosen, by name, from the factories the
 * class path offers.
 */
final class ServeModule
        extends AbstractModule
{
    private static final Logger log = LoggerFactory.getLogger(ServeModule.class);

    private final ServeOptions options;
    private final Registry<BackendFactory> backends;
    private final Registry<FrontendFactory> frontends;
    private final PluginCli pluginCli;

    ServeModule(ServeOptions options, Registry<BackendFactory> backends, Registry<FrontendFactory> frontends, PluginCli pluginCli)
    {
        this.options = requireNonNull(options, "options is null");
        this.backends = requireNonNull(backends, "backends is null");
        this.frontends = requireNonNull(frontends, "frontends is null");
        this.pluginCli = requireNonNull(pluginCli, "pluginCli is null");
    }

    @Override
    protected void configure()
    {
        bind(ServeOptions.class).toInstance(options);
        bind(new TypeLiteral<Registry<BackendFactory>>() {}).toInstance(backends);
        bind(new TypeLiteral<Registry<FrontendFactory>>() {}).toInstance(frontends);
        bind(PluginCli.class).toInstance(pluginCli);
        bind(JloopServer.class).in(Scopes.SINGLETON);
    }

    @Provides
    @Singleton
    static BackendFactory backend(Registry<BackendFactory> backends, ServeOptions options)
    {
        if (!options.backend.equals("auto")) {
            BackendFactory factory = backends.get(options.backend);
            String cause = factory.unavailabilityCause();
            if (cause != null) {
                throw new UserException("backend '" + factory.name() + "' is not available here: " + cause);
            }
            return factory;
        }
        return auto(backends);
    }

    /**
     * The available backend with the highest priority; one with a negative priority is never chosen
     * ({@link BackendFactory#autoPriority()}). Says why faster ones were passed over.
     */
    static BackendFactory auto(Registry<BackendFactory> backends)
    {
        BackendFactory chosen = null;
        List<BackendFactory> candidates = backends.all().stream()
                .filter(factory -> factory.autoPriority() >= 0)
                .sorted(Comparator.comparingInt(BackendFactory::autoPriority).reversed())
                .toList();
        for (BackendFactory factory : candidates) {
            String cause = factory.unavailabilityCause();
            if (cause == null) {
                chosen = factory;
                break;
            }
            log.info("backend {} is not available, falling back: {}", factory.name(), cause);
        }
        if (chosen == null) {
            throw new UserException("no backend is available for --backend auto; known backends: " + String.join(", ", backends.names())
                    + " (choose one by name with --backend NAME)");
        }
        return chosen;
    }

    @Provides
    @Singleton
    static FrontendFactory frontend(Registry<FrontendFactory> frontends, ServeOptions options)
    {
        return frontends.get(options.frontend);
    }
}
