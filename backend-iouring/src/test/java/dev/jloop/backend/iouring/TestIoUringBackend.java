package dev.jloop.backend.iouring;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ThreadModel;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.BeforeEach;

/** The conformance suite on the io_uring backend, through the page cache. */
public class TestIoUringBackend
        extends AbstractBackingFileTest
{
    @BeforeEach
    void requireIoUring()
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), "io_uring unavailable: " + IoUring.unavailabilityCause());
    }

    @Override
    protected BackendFactory factory()
    {
        return new IoUringBackendFactory();
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        // O_DIRECT: no read-ahead, since it does not use the page cache
        return Capabilities.builder()
                .flush(true).nativeFua(true).trim(true).zero(true).extents(true).multiConn(true).cache(!direct())
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(direct() ? BLOCK : 1)
                .queueDepth(queueDepth())
                .build();
    }

    @Override
    protected boolean plainFile()
    {
        return true;
    }
}
