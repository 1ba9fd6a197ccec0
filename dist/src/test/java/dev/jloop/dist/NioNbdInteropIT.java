package dev.jloop.dist;

class NioNbdInteropIT
        extends AbstractNbdInteropIT
{
    @Override
    protected String backend()
    {
        return "nio";
    }
}
