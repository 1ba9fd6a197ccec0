package dev.jloop.backend.iouring;

/** The conformance suite on the io_uring backend with O_DIRECT. */
public class TestIoUringDirectBackend
        extends TestIoUringBackend
{
    @Override
    protected boolean direct()
    {
        return true;
    }
}
