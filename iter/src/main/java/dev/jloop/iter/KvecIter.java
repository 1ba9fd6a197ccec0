package dev.jloop.iter;

import java.nio.ByteBuffer;

/**
 * {@link dev.jloop.api.IovIter.Kind#KVEC}: direct {@link ByteBuffer} segments, like {@code struct kvec}.
 */
public final class KvecIter
        extends SegmentIter
{
    private final ByteBuffer[] views;
    private final int[] bases;
    private final long[] addresses;

    private KvecIter(Direction direction, ByteBuffer[] buffers)
    {
        super(Kind.KVEC);
        views = new ByteBuffer[buffers.length];
        bases = new int[buffers.length];
        addresses = new long[buffers.length];
        int[] lengths = new int[buffers.length];
        long count = 0;
        for (int i = 0; i < buffers.length; i++) {
            views[i] = buffers[i].duplicate();
            bases[i] = buffers[i].position();
            addresses[i] = DirectMemory.address(buffers[i]) + bases[i];
            lengths[i] = buffers[i].remaining();
            count += lengths[i];
        }
        reset(direction, lengths, lengths.length, count);
    }

    /**
     * Iterates over the remaining bytes of each direct buffer, in order. The buffers' own positions
     * are not changed; the buffers must stay reachable while the iterator is in use.
     */
    public static KvecIter of(Direction direction, ByteBuffer... buffers)
    {
        return new KvecIter(direction, buffers);
    }

    @Override
    ByteBuffer view(int k)
    {
        return views[k];
    }

    @Override
    int base(int k)
    {
        return bases[k];
    }

    @Override
    long address(int k)
    {
        return addresses[k];
    }
}
