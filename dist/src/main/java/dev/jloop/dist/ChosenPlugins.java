package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;

import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * The backend and the frontend a {@code jloop serve} uses, each with its options checked by the
 * plugin itself ({@link ServeModule#choose}).
 *
 * @param backendOptions what every export's backend gets; an export may add its own
 * @param auto whether {@code --backend auto} chose the backend
 */
record ChosenPlugins(BackendFactory backend, Map<String, String> backendOptions, boolean auto, FrontendFactory frontend, FrontendConfig frontendConfig)
{
    ChosenPlugins
    {
        requireNonNull(backend, "backend is null");
        backendOptions = Map.copyOf(requireNonNull(backendOptions, "backendOptions is null"));
        requireNonNull(frontend, "frontend is null");
        requireNonNull(frontendConfig, "frontendConfig is null");
    }

    /** How the start line and messages name the choice. */
    String describe()
    {
        return "the backend is '" + backend.name() + "'" + (auto ? " (auto)" : "") + " and the frontend '" + frontend.name() + "'";
    }
}
