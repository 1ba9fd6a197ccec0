package dev.jloop.backend.nio;

/**
 * Exclusive holds on ranges of {@code O_DIRECT} blocks, one range per worker slot. A write that
 * read-modify-writes a partial block must not overlap another write (or a punch hole) of that
 * block, or the stale copy it writes back would undo the other; so every direct write and
 * fallocate holds the blocks it touches. Writes to disjoint blocks never wait for each other.
 *
 * <p>No allocation: the held ranges live in two arrays indexed by slot. A holder takes no other
 * lock while it holds a range, so there is no deadlock.
 */
final class BlockRangeLock
{
    private final long[] first;
    private final long[] last;

    BlockRangeLock(int slots)
    {
        first = new long[slots];
        last = new long[slots];
        java.util.Arrays.fill(last, -1);
    }

    /** Waits until no other slot holds a block of {@code [first, last]}, then holds them for {@code slot}. */
    synchronized void lock(int slot, long first, long last)
    {
        boolean interrupted = false;
        while (conflicts(slot, first, last)) {
            try {
                wait();
            }
            catch (InterruptedException e) {
                // the range must be held before the write goes on: remember, and wait again
                interrupted = true;
            }
        }
        this.first[slot] = first;
        this.last[slot] = last;
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    synchronized void unlock(int slot)
    {
        first[slot] = 0;
        last[slot] = -1;
        notifyAll();
    }

    private boolean conflicts(int slot, long first, long last)
    {
        for (int i = 0; i < this.first.length; i++) {
            if (i != slot && this.first[i] <= last && first <= this.last[i]) {
                return true;
            }
        }
        return false;
    }
}
