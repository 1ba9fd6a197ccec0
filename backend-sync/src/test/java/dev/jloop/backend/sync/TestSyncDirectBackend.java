package dev.jloop.backend.sync;

import dev.jloop.api.BackendFactory;

public class TestSyncDirectBackend
        extends AbstractFileBackendTest
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
