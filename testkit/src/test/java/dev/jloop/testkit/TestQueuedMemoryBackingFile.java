package dev.jloop.testkit;

import dev.jloop.api.BackendFactory;

import java.util.Map;

/** The conformance suite on the in-memory file completing on its own threads, with short transfers. */
public class TestQueuedMemoryBackingFile
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
        return Map.of("memory-queued", "3", "memory-max-transfer", "5000");
    }

    @Override
    protected boolean holesFromFileSystem()
    {
        return false;
    }
}
