package dev.jloop.testkit;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.PluginOption;

import java.io.IOException;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * A backend that is another backend seen through a filter: what {@code --backend NAME --filter F}
 * serves. Hand it to {@link AbstractBackingFileTest} to run the conformance suite through a filter,
 * as jloop does for its own and a third party does for theirs:
 * {@code protected BackendFactory factory() { return new FilteredBackendFactory(new MemoryBackendFactory(), new MyFilterFactory(), Map.of()); }}
 */
public final class FilteredBackendFactory
        implements BackendFactory
{
    private final BackendFactory below;
    private final FilterFactory filter;
    private final Map<String, String> filterOptions;

    public FilteredBackendFactory(BackendFactory below, FilterFactory filter, Map<String, String> filterOptions)
    {
        this.below = requireNonNull(below, "below is null");
        this.filter = requireNonNull(filter, "filter is null");
        this.filterOptions = Map.copyOf(requireNonNull(filterOptions, "filterOptions is null"));
        filter.validate(this.filterOptions);
    }

    @Override
    public String name()
    {
        return below.name() + "-" + filter.name();
    }

    @Override
    public String description()
    {
        return below.description() + ", through the " + filter.name() + " filter";
    }

    @Override
    public List<PluginOption> options()
    {
        return below.options();
    }

    @Override
    public void create(BackendConfig config, long size)
            throws IOException
    {
        below.create(filter.configureBackend(config, filterOptions), size);
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        BackingFile file = below.open(filter.configureBackend(config, filterOptions));
        try {
            return filter.wrap(file, config, filterOptions);
        }
        catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
    }
}
