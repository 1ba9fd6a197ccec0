package dev.jloop.backend.iouring;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractFileBackendTest;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.BeforeEach;

public class TestIoUringDirectBackend
        extends AbstractFileBackendTest
{
    @BeforeEach
    void requireIoUring()
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), String.valueOf(IoUring.unavailabilityCause()));
    }

    @Override
    protected BackendFactory factory()
    {
        return new IoUringBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return true;
    }
}
