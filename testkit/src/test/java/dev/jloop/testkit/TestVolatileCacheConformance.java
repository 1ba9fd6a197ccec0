package dev.jloop.testkit;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;

import java.io.IOException;

/**
 * The conformance suite through a {@link VolatileCacheBackingFile} on the in-memory file: with the
 * power on, the filter must keep the whole {@link BackingFile} contract of what it wraps.
 */
public class TestVolatileCacheConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new BackendFactory()
        {
            @Override
            public String name()
            {
                return "volatile-cache";
            }

            @Override
            public String description()
            {
                return "the memory backend behind a volatile write cache (tests)";
            }

            @Override
            public BackingFile open(BackendConfig config)
                    throws IOException
            {
                return VolatileCacheBackingFile.builder(new MemoryBackendFactory().open(config)).nativeFua(true).build();
            }
        };
    }

    @Override
    protected boolean holesFromFileSystem()
    {
        return false;
    }
}
