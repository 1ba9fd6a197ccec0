package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/**
 * The conformance suite through the rate filter, with a rate the suite's floods exceed, so that many
 * requests wait and go from the timer thread, and with short transfers, whose unsent bits go back.
 */
public class TestRateFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new RateFilterFactory(), Map.of("rate", "2G", "burstiness", "5ms"));
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-max-transfer", "200000");
    }
}
