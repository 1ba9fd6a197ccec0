package dev.jloop.backend.iouring;

import java.util.Arrays;

/**
 * Locks on ranges of 4 KiB blocks, for {@code O_DIRECT}: a read-modify-write of a partial block (and a
 * fallocate, which the kernel applies to partial blocks through the page cache) holds its blocks
 * exclusively; an aligned write in flight holds its blocks shared. So a read-modify-write never writes
 * back stale bytes over a write it overlapped, while aligned writes, like on a disk, run side by side.
 *
 * <p>A range is released by whichever thread completes the operation, not necessarily the one that
 * took it (the ring's completion thread). Release never blocks and, unless the table must grow,
 * allocates nothing.
 */
final class BlockRangeLock
{
    private long[] first = new long[16];
    private long[] last = new long[16];
    private boolean[] exclusive = new boolean[16];
    private int held;

    /**
     * Waits until no conflicting range is held, then holds {@code [firstBlock, lastBlock]}.
     * {@code beforeWait} runs before each wait (to submit what this thread batched, so that the
     * operations it waits for can complete).
     */
    synchronized void lock(long firstBlock, long lastBlock, boolean exclusiveMode, Runnable beforeWait)
    {
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
        if (held == first.length) {
            first = Arrays.copyOf(first, held * 2);
            last = Arrays.copyOf(last, held * 2);
            exclusive = Arrays.copyOf(exclusive, held * 2);
        }
        first[held] = firstBlock;
        last[held] = lastBlock;
        exclusive[held] = exclusiveMode;
        held++;
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    synchronized void unlock(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        for (int i = 0; i < held; i++) {
            if (first[i] == firstBlock && last[i] == lastBlock && exclusive[i] == exclusiveMode) {
                held--;
                first[i] = first[held];
                last[i] = last[held];
                exclusive[i] = exclusive[held];
                notifyAll();
                return;
            }
        }
        throw new IllegalStateException("block range not held: " + firstBlock + ".." + lastBlock);
    }

    synchronized int held()
    {
        return held;
    }

    private boolean conflicts(long firstBlock, long lastBlock, boolean exclusiveMode)
    {
        for (int i = 0; i < held; i++) {
            if (first[i] <= lastBlock && firstBlock <= last[i] && (exclusiveMode || exclusive[i])) {
                return true;
            }
        }
        return false;
    }
}
