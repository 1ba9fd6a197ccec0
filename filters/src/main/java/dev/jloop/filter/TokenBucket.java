package dev.jloop.filter;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A token bucket of bits, as nbdkit's rate filter keeps them ({@code filters/rate/bucket.c}): it
 * fills at the rate, holds at most the rate's worth of the burst time, and starts full. A request
 * takes its bits at once, which may leave the bucket in debt, and goes when the bucket would have
 * held them: a request bigger than the bucket waits for the rest, and requests go in the order they
 * took, at the rate on average.
 *
 * <p>The state is one number, the time at which the bucket is full again, changed by
 * compare-and-set: no lock, so that a completion that gives bits back never waits for a submitter.
 * Times are {@link System#nanoTime()} values, passed in so that tests choose the clock.
 */
final class TokenBucket
{
    /** What {@link #take} returns while there is no limit. */
    static final long UNLIMITED = -1;

    private static final double NANOS_PER_SECOND = 1e9;

    private final long burstNanos;
    /** 0: no limit. */
    private volatile long bitsPerSecond;
    /** When the bucket is full again; at or before now it is full. */
    private final AtomicLong fullAt;

    /**
     * @param bitsPerSecond the rate, 0 for none
     * @param burstNanos how long the rate may be exceeded after a pause: the capacity in time
     */
    TokenBucket(long bitsPerSecond, long burstNanos, long now)
    {
        if (bitsPerSecond < 0 || burstNanos < 0) {
            throw new IllegalArgumentException("negative rate or burst: " + bitsPerSecond + ", " + burstNanos);
        }
        this.bitsPerSecond = bitsPerSecond;
        this.burstNanos = burstNanos;
        this.fullAt = new AtomicLong(now);
    }

    long bitsPerSecond()
    {
        return bitsPerSecond;
    }

    /**
     * Takes {@code bits} at {@code now}; returns how many nanoseconds from {@code now} the request
     * must wait before it goes (0: at once), or {@link #UNLIMITED}.
     */
    long take(long bits, long now)
    {
        long rate = bitsPerSecond;
        if (rate == 0) {
            return UNLIMITED;
        }
        long cost = nanos(bits, rate);
        while (true) {
            long full = fullAt.get();
            long next = (full - now > 0 ? full : now) + cost;
            if (fullAt.compareAndSet(full, next)) {
                return Math.max(0, next - burstNanos - now);
            }
        }
    }

    /**
     * Gives back bits taken and not sent (a short or failed transfer). The bucket holds no more
     * than its capacity all the same; requests already waiting keep their time.
     */
    void refund(long bits)
    {
        long rate = bitsPerSecond;
        if (rate > 0 && bits > 0) {
            fullAt.addAndGet(-nanos(bits, rate));
        }
    }

    /**
     * Changes the rate from {@code now} on; returns the old one. The bits in the bucket (or the debt)
     * stay, but no more than the new capacity, as nbdkit's {@code bucket_adjust_rate}; a bucket that
     * had no limit starts full. Requests already waiting keep their time.
     */
    long adjust(long newBitsPerSecond, long now)
    {
        if (newBitsPerSecond < 0) {
            throw new IllegalArgumentException("negative rate: " + newBitsPerSecond);
        }
        long old = bitsPerSecond;
        if (old == newBitsPerSecond) {
            return old;
        }
        if (newBitsPerSecond > 0) {
            if (old == 0) {
                fullAt.set(now);
            }
            else {
                while (true) {
                    long full = fullAt.get();
                    double emptyNanos = Math.max(0, full - now);
                    // the level in time of the new rate: positive bits left, or negative debt
                    double level = (burstNanos - emptyNanos) * old / newBitsPerSecond;
                    long wait = (long) Math.max(0, burstNanos - Math.min(level, burstNanos));
                    if (fullAt.compareAndSet(full, now + wait)) {
                        break;
                    }
                }
            }
        }
        bitsPerSecond = newBitsPerSecond;
        return old;
    }

    private static long nanos(long bits, long bitsPerSecond)
    {
        return (long) Math.ceil(bits * NANOS_PER_SECOND / bitsPerSecond);
    }
}
