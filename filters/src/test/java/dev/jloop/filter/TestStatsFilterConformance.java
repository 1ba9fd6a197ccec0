package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.nio.file.Path;
import java.util.Map;

/** The conformance suite through the stats filter, over a file that completes on its own threads: counting changes no result. */
public class TestStatsFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new StatsFilterFactory(),
                Map.of("stats-file", Path.of("target", "stats-filter-conformance.stats").toString(), "stats-append", "true"));
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "2");
    }
}
