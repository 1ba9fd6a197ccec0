package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.nio.file.Path;
import java.util.Map;

/** The conformance suite through the log filter, over a file that completes on its own threads: logging changes no result. */
public class TestLogFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new LogFilterFactory(),
                Map.of("log-file", Path.of("target", "log-filter-conformance.log").toString()));
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "2");
    }
}
