package dev.jloop.dist;

class IoUringNbdInteropIT
        extends AbstractNbdInteropIT
{
    @Override
    protected String backend()
    {
        return "io_uring";
    }
}
