package dev.jloop.backend.sync;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;

public class SyncDirectBackingFileTest
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new SyncBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return true;
    }
}
