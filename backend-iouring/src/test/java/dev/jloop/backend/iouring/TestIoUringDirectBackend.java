package dev.jloop.backend.iouring;

public class TestIoUringDirectBackend
        extends TestIoUringBackend
{
    @Override
    protected boolean direct()
    {
        return true;
    }
}
