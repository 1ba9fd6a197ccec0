package dev.jloop.testkit;

import dev.jloop.api.BackendFactory;

/** The conformance suite on the in-memory file, synchronous. */
public class TestMemoryBackingFile
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new MemoryBackendFactory();
    }

    @Override
    protected boolean holesFromFileSystem()
    {
        return false;
    }
}
