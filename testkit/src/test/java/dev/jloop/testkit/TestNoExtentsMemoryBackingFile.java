package dev.jloop.testkit;

import dev.jloop.api.BackendFactory;

import java.util.Map;

/** The conformance suite on the in-memory file declaring no extents, which then reports every range as data. */
public class TestNoExtentsMemoryBackingFile
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new MemoryBackendFactory();
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-no-extents", "true");
    }
}
