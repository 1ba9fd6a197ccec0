package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/** The conformance suite through the cacheextents filter, over a file that completes on its own threads: its extents are the file's. */
public class TestCacheExtentsFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new CacheExtentsFilterFactory(), Map.of());
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "2");
    }
}
