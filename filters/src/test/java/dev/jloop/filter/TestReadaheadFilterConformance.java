package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/**
 * The conformance suite through the readahead filter, over a file that completes on its own threads
 * and transfers at most 40000 bytes a call: windows come back short and reads are served from them
 * while writes land.
 */
public class TestReadaheadFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new ReadaheadFilterFactory(), Map.of("readahead-max", "256K"));
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "2", "memory-max-transfer", "40000");
    }
}
