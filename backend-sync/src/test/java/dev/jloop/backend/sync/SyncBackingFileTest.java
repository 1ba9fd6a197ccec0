package dev.jloop.backend.sync;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;

public class SyncBackingFileTest
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new SyncBackendFactory();
    }
}
