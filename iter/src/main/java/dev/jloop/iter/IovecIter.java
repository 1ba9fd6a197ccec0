package dev.jloop.iter;

import java.nio.ByteBuffer;

/**
 * {@link dev.jloop.api.IovIter.Kind#IOVEC}: heap segments ({@code byte[]} or heap buffers), like
 * user-space {@code struct iovec}s. Native I/O needs a copy through a direct buffer.
 */
public final class IovecIter
        extends SegmentIter
{
    private final ByteBuffer[] views;
    private final int[] bases;

    private IovecIter(Direction direction, ByteBuffer[] buffers)
    {
        super(Kind.IOVEC);
        views = new ByteBuffer[buffers.length];
        bases = new int[buffers.length];
        int[] lengths = new int[buffers.length];
        long count = 0;
        for (int i = 0; i < buffers.length; i++) {
            if (buffers[i].isDirect()) {
                throw new IllegalArgumentException("IOVEC segments are heap memory; use KvecIter for direct buffers");
            }
            views[i] = buffers[i].duplicate();
            bases[i] = buffers[i].position();
            lengths[i] = buffers[i].remaining();
            count += lengths[i];
        }
        reset(direction, lengths, lengths.length, count);
    }

    /** Iterates over the remaining bytes of each buffer, in order. The buffers' own positions are not changed. */
    public static IovecIter of(Direction direction, ByteBuffer... buffers)
    {
        return new IovecIter(direction, buffers);
    }

    /** Iterates over whole arrays, in order. */
    public static IovecIter of(Direction direction, byte[]... arrays)
    {
        ByteBuffer[] buffers = new ByteBuffer[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            buffers[i] = ByteBuffer.wrap(arrays[i]);
        }
        return new IovecIter(direction, buffers);
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
        throw new UnsupportedOperationException("heap segments have no native address");
    }
}
