package dev.jloop.backend.rbd;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The free slots of an {@link RbdBackingFile}, a lock-free stack of indices (Treiber's, with a
 * version in the head's upper half against ABA), so that librbd's callback gives a slot back without
 * taking a lock a submitter may hold. A submitter that finds none polls: the loop device keeps no
 * more in flight than there are slots, so only a caller that does not (a test) ever waits here.
 */
final class FreeSlots
{
    private static final long PARK_NANOS = 20_000;

    /** The version in the upper 32 bits, the top index + 1 in the lower (0: empty). */
    private final AtomicLong head = new AtomicLong();
    /** The index below each free one; written before the push that publishes it. */
    private final int[] next;

    /** A stack holding {@code 0 .. count - 1}. */
    FreeSlots(int count)
    {
        this.next = new int[count];
        for (int i = count - 1; i >= 0; i--) {
            push(i);
        }
    }

    void push(int index)
    {
        while (true) {
            long h = head.get();
            next[index] = (int) h - 1;
            if (head.compareAndSet(h, (((h >>> 32) + 1) << 32) | (index + 1))) {
                return;
            }
        }
    }

    /** A free index, or -1 when there is none. */
    int poll()
    {
        while (true) {
            long h = head.get();
            int top = (int) h - 1;
            if (top < 0) {
                return -1;
            }
            if (head.compareAndSet(h, (((h >>> 32) + 1) << 32) | (next[top] + 1))) {
                return top;
            }
        }
    }

    /** A free index, waiting for one if need be. */
    int take()
    {
        int index;
        while ((index = poll()) < 0) {
            LockSupport.parkNanos(PARK_NANOS);
            if (Thread.interrupted()) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for a free slot");
            }
        }
        return index;
    }
}
