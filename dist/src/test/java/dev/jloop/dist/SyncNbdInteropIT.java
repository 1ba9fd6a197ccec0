package dev.jloop.dist;

class SyncNbdInteropIT
        extends AbstractNbdInteropIT
{
    @Override
    protected String backend()
    {
        return "sync";
    }
}
