package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.backend.iouring.IoUringBackendFactory;

/** The conformance suite through every content-keeping filter over the io_uring backend. */
public class TestAllFiltersOverIoUring
        extends AbstractAllFiltersTest
{
    @Override
    protected BackendFactory backend()
    {
        return new IoUringBackendFactory();
    }
}
