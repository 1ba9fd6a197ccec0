package dev.jloop.backend.iouring;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.BeforeEach;

public class IoUringBackingFileTest
        extends AbstractBackingFileTest
{
    @BeforeEach
    public void assumeIoUring()
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), "io_uring unavailable: " + IoUring.unavailabilityCause());
    }

    @Override
    protected BackendFactory factory()
    {
        return new IoUringBackendFactory();
    }
}
