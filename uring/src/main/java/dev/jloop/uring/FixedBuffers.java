package dev.jloop.uring;

import java.util.Arrays;

/**
 * The memory regions registered with a ring as fixed buffers ({@link Ring#registerBuffers}), in
 * their registration order: where an operation's buffer lies inside region {@code i}, it may go as
 * READ_FIXED/WRITE_FIXED with buffer index {@code i}, which saves the kernel pinning its pages per
 * operation.
 */
public final class FixedBuffers
{
    public static final FixedBuffers NONE = new FixedBuffers(new long[0], new long[0]);

    private final long[] starts;
    private final long[] ends;

    public FixedBuffers(long[] addresses, long[] lengths)
    {
        if (addresses.length != lengths.length) {
            throw new IllegalArgumentException("need as many lengths as addresses");
        }
        this.starts = addresses.clone();
        this.ends = new long[addresses.length];
        for (int i = 0; i < ends.length; i++) {
            ends[i] = addresses[i] + lengths[i];
        }
    }

    /** The index of the region that holds {@code [address, address + length)}, or -1. */
    public int indexOf(long address, int length)
    {
        // a handful of regions at most: a scan beats anything cleverer
        for (int i = 0; i < starts.length; i++) {
            if (address >= starts[i] && address + length <= ends[i]) {
                return i;
            }
        }
        return -1;
    }

    public boolean isEmpty()
    {
        return starts.length == 0;
    }

    @Override
    public String toString()
    {
        return "FixedBuffers" + Arrays.toString(starts);
    }
}
