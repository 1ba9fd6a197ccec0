package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;

import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * The backend, filters and frontend a {@code jloop serve} uses, each with its options checked by the
 * plugin itself ({@link ServeModule#choose}).
 *
 * @param backendOptions what every export's backend gets; an export may add its own
 * @param auto whether {@code --backend auto} chose the backend
 * @param filters the {@code --filter}s, the first closest to the frontend
 */
record ChosenPlugins(BackendFactory backend, Map<String, String> backendOptions, boolean auto, List<Filter> filters, FrontendFactory frontend,
        FrontendConfig frontendConfig)
{
    ChosenPlugins
    {
        requireNonNull(backend, "backend is null");
        backendOptions = Map.copyOf(requireNonNull(backendOptions, "backendOptions is null"));
        filters = List.copyOf(filters);
        requireNonNull(frontend, "frontend is null");
        requireNonNull(frontendConfig, "frontendConfig is null");
    }

    /** A filter with the options given for every export. */
    record Filter(FilterFactory factory, Map<String, String> options)
    {
        Filter
        {
            requireNonNull(factory, "factory is null");
            options = Map.copyOf(options);
        }
    }

    /** How messages name the choice. */
    String describe()
    {
        return "the backend is '" + backend.name() + "'" + (auto ? " (auto)" : "")
                + (filters.isEmpty() ? "" : ", the filters " + String.join(", ", filters.stream().map(filter -> "'" + filter.factory().name() + "'").toList()))
                + " and the frontend '" + frontend.name() + "'";
    }
}
