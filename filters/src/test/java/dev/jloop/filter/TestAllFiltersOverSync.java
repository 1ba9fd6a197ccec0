package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.backend.sync.SyncBackendFactory;

/** The conformance suite through every content-keeping filter over the sync backend. */
public class TestAllFiltersOverSync
        extends AbstractAllFiltersTest
{
    @Override
    protected BackendFactory backend()
    {
        return new SyncBackendFactory();
    }
}
