package dev.jloop.testkit;

import java.util.Map;

/** The conformance suite through the filter on the in-memory file completing on its own threads, with short transfers. */
public class TestQueuedVolatileCacheConformance
        extends TestVolatileCacheConformance
{
    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "3", "memory-max-transfer", "5000");
    }
}
