package dev.jloop.loop.stats;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * The numbers of one kind of request: how many ended, their bytes, how many failed and with which
 * errno, and their latencies. Shared by the loop device (every request of an export) and the
 * {@code stats} filter (what one layer hands down). {@link #record} allocates nothing and takes no
 * lock: the counts are {@link LongAdder}s, the latencies a striped {@link LatencyHistogram}.
 */
public final class OpStats
{
    /** Errno values counted one by one; larger ones are counted under this value. */
    public static final int MAX_ERRNO = 255;

    private final LongAdder completed = new LongAdder();
    private final LongAdder bytes = new LongAdder();
    private final LongAdder errors = new LongAdder();
    private final AtomicLongArray byErrno = new AtomicLongArray(MAX_ERRNO + 1);
    private final LatencyHistogram latency = new LatencyHistogram();

    /**
     * One request ended after {@code latencyNanos}: successfully with {@code bytes} bytes, or with
     * {@code error} ({@code -errno}, or any negative value); failed requests count no bytes.
     */
    public void record(long latencyNanos, long bytes, int error)
    {
        completed.increment();
        if (error < 0) {
            errors.increment();
            byErrno.incrementAndGet(Math.min(MAX_ERRNO, -error));
        }
        else {
            this.bytes.add(bytes);
        }
        latency.record(latencyNanos);
    }

    /** Requests ended, failed ones included. */
    public long completed()
    {
        return completed.sum();
    }

    /** Bytes of the requests that succeeded. */
    public long bytes()
    {
        return bytes.sum();
    }

    public long errors()
    {
        return errors.sum();
    }

    /** Requests that failed with {@code -errno}. */
    public long errors(int errno)
    {
        return byErrno.get(Math.min(MAX_ERRNO, errno));
    }

    public LatencyHistogram.Snapshot latency()
    {
        return latency.snapshot();
    }
}
