package dev.jloop.posix;

import java.util.Arrays;

/**
 * Holds on ranges of {@code O_DIRECT} blocks ({@value BounceIo#DIRECT_BLOCK_SIZE} bytes), for every
 * backend with concurrent writers. A read-modify-write of a partial block ({@link BounceIo}) and a
 * fallocate (which the kernel applies to partial blocks through the page cache) hold their blocks
 * exclusively, so the stale copy of a block they write back never undoes another write of it. A
 * write that needs no read-modify-write may hold its blocks shared: such writes, like on a disk, run
 * side by side, and only exclusive holders wait for them.
 *
 * <p>{@link #lock} returns a hold, a small number that {@link #unlock(int)} takes back. The hold
 * belongs to the operation, not to a thread: whichever thread completes the operation (a ring's
 * completion thread, a pool worker) releases it. Release never waits for another holder.
 *
 * <p>No allocation while at most {@code holders} ranges (given at construction) are held at once: a
 * backend with a fixed number of workers, each holding one range at a time, never allocates; one
 * whose holders are not bounded (any submitting thread may bounce a write) grows the table once in a
 * while. A holder takes no other lock while it waits, so there is no deadlock between holders.
 */
public final class BlockRangeLock
{
    private static final Runnable NOTHING = () -> {};

    private long[] first;
    private long[] last;
    private boolean[] exclusive;
    /** Holds not in use, taken from the top. */
    private int[] free;
    private int nrFree;
    /** Holds ever handed out: the conflict check looks at no more than these. */
    private int used;

    /** A lock for up to {@code holders} ranges held at once before it has to grow. */
    public BlockRangeLock(int holders)
    {
        if (holders < 1) {
            throw new IllegalArgumentException("holders must be positive: " + holders);
        }
        first = new long[0];
        last = new long[0];
        exclusive = new boolean[0];
        grow(holders);
    }

    /** {@link #lock(long, long, boolean, Runnable)} with nothing to do before waiting. */
    public int lock(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        return lock(firstBlock, lastBlock, exclusiveMode, NOTHING);
    }

    /**
     * Waits until no conflicting range is held (any overlapping one when {@code exclusiveMode}, an
     * overlapping exclusive one otherwise), then holds {@code [firstBlock, lastBlock]} and returns the
     * hold for {@link #unlock(int)}. {@code beforeWait} runs before each wait, under this lock: a
     * submitter that batched operations must submit them, or the holds it waits for may never be
     * released. Interrupts do not end the wait (the range must be held before the caller writes);
     * the thread's interrupt status is set again on return.
     */
    public synchronized int lock(long firstBlock, long lastBlock, boolean exclusiveMode, Runnable beforeWait)
    {
        if (firstBlock < 0 || lastBlock < firstBlock) {
            throw new IllegalArgumentException("bad block range: " + firstBlock + ".." + lastBlock);
        }
        boolean interrupted = false;
        while (conflicts(firstBlock, lastBlock, exclusiveMode)) {
            beforeWait.run();
            try {
                wait();
            }
            catch (InterruptedException e) {
                interrupted = true;
            }
        }
        int hold = hold(firstBlock, lastBlock, exclusiveMode);
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        return hold;
    }

    private int hold(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        if (nrFree == 0) {
            grow(first.length * 2);
        }
        int hold = free[--nrFree];
        used = Math.max(used, hold + 1);
        first[hold] = firstBlock;
        last[hold] = lastBlock;
        exclusive[hold] = exclusiveMode;
        return hold;
    }

    /**
     * Holds {@code [firstBlock, lastBlock]} if no conflicting range is held, without waiting: the hold
     * for {@link #unlock(int)}, or -1. For a thread that must not wait for another's operation (an
     * event loop, which may be the one that would complete it).
     */
    public synchronized int tryLock(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        if (firstBlock < 0 || lastBlock < firstBlock) {
            throw new IllegalArgumentException("bad block range: " + firstBlock + ".." + lastBlock);
        }
        if (conflicts(firstBlock, lastBlock, exclusiveMode)) {
            return -1;
        }
        return hold(firstBlock, lastBlock, exclusiveMode);
    }

    /** Releases a hold {@link #lock} returned; from any thread, exactly once. */
    public synchronized void unlock(int hold)
    {
        if (hold < 0 || hold >= used || last[hold] < 0) {
            throw new IllegalStateException("block range not held: " + hold);
        }
        first[hold] = 0;
        last[hold] = -1;
        exclusive[hold] = false;
        free[nrFree++] = hold;
        notifyAll();
    }

    /** Ranges held right now. */
    public synchronized int held()
    {
        return first.length - nrFree;
    }

    private boolean conflicts(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        // a free entry is [0, -1]: it overlaps nothing
        for (int i = 0; i < used; i++) {
            if (first[i] <= lastBlock && firstBlock <= last[i] && (exclusiveMode || exclusive[i])) {
                return true;
            }
        }
        return false;
    }

    /** Makes room for {@code capacity} holds; only called when every hold is taken. */
    private void grow(int capacity)
    {
        int old = first.length;
        first = Arrays.copyOf(first, capacity);
        last = Arrays.copyOf(last, capacity);
        exclusive = Arrays.copyOf(exclusive, capacity);
        Arrays.fill(last, old, capacity, -1);
        // the lowest new hold on top: holds are reused low first, so the conflict check stays short
        free = new int[capacity];
        nrFree = 0;
        for (int hold = capacity - 1; hold >= old; hold--) {
            free[nrFree++] = hold;
        }
    }
}
