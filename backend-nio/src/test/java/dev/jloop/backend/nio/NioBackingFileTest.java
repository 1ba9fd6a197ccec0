package dev.jloop.backend.nio;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;

public class NioBackingFileTest
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new NioBackendFactory();
    }
}
