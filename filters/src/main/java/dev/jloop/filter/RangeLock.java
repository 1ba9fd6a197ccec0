package dev.jloop.filter;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Byte ranges of a file held shared or exclusive, without a thread ever waiting: a request that
 * cannot have its range yet leaves what it would do next, and the release that frees the range
 * runs it (through the {@link Trampoline}). Ranges conflict when they overlap and one is
 * exclusive; they are granted in the order asked, so an exclusive range is not starved by shared
 * ones. The monitor is held only to update the lists, never while a step runs.
 */
final class RangeLock
{
    private final List<Range> held = new ArrayList<>();
    private final List<Range> waiting = new ArrayList<>();

    /** {@code [start, end)}, shared or exclusive; acquired once and released once. */
    static final class Range
    {
        private final long start;
        private final long end;
        private final boolean exclusive;
        private Runnable then;

        Range(long start, long end, boolean exclusive)
        {
            if (start >= end) {
                throw new IllegalArgumentException("empty range [" + start + ", " + end + ")");
            }
            this.start = start;
            this.end = end;
            this.exclusive = exclusive;
        }

        boolean conflicts(Range other)
        {
            return (exclusive || other.exclusive) && start < other.end && other.start < end;
        }

        @Override
        public String toString()
        {
            return (exclusive ? "exclusive" : "shared") + " [" + start + ", " + end + ")";
        }
    }

    /** Runs {@code then} once {@code range} is held: at once, or when the ranges in its way are released. */
    void acquire(Range range, Runnable then)
    {
        boolean now;
        synchronized (this) {
            range.then = then;
            now = !conflictsWithAny(range, held) && !conflictsWithAny(range, waiting);
            (now ? held : waiting).add(range);
        }
        if (now) {
            Trampoline.run(then);
        }
    }

    /** Releases {@code range} and runs what was waiting for it and may now go. */
    void release(Range range)
    {
        List<Range> granted = new ArrayList<>();
        synchronized (this) {
            if (!held.remove(range)) {
                throw new IllegalStateException("released without being held: " + range);
            }
            List<Range> before = new ArrayList<>();
            for (Iterator<Range> it = waiting.iterator(); it.hasNext(); ) {
                Range next = it.next();
                if (!conflictsWithAny(next, held) && !conflictsWithAny(next, before)) {
                    it.remove();
                    held.add(next);
                    granted.add(next);
                }
                else {
                    before.add(next);
                }
            }
        }
        for (Range next : granted) {
            Trampoline.run(next.then);
        }
    }

    /** Ranges held and waiting, for tests. */
    synchronized int size()
    {
        return held.size() + waiting.size();
    }

    private static boolean conflictsWithAny(Range range, List<Range> ranges)
    {
        for (Range other : ranges) {
            if (range.conflicts(other)) {
                return true;
            }
        }
        return false;
    }
}
