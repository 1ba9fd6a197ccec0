package dev.jloop.backend.nio;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;

public class NioDirectBackingFileTest
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new NioBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return true;
    }
}
