package dev.jloop.loop.stats;

import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * Latencies in nanoseconds, counted into fixed log-linear buckets: 16 per power of two (each at most
 * 6.25 % wide), up to about 18 minutes. Recording costs a few atomic additions on memory that belongs
 * to the recording thread's stripe, no allocation and no lock; everything else (percentiles,
 * Prometheus buckets, rates over a window) is computed from a {@link Snapshot} by whoever reads.
 *
 * <p>The stripes keep threads that complete requests at the same time (a ring's reaper, a pool of
 * workers) off each other's cache lines; a reader adds them up.
 */
public final class LatencyHistogram
{
    static final int SUB_BITS = 4;
    static final int SUB = 1 << SUB_BITS;
    /** Values at or above are counted in the last bucket. */
    static final long LIMIT = 1L << 40;
    public static final int BUCKETS = bucket(LIMIT - 1) + 1;
    /** Four stripes per core (a power of two, 8 to 64), so that two busy threads rarely share one. */
    private static final int STRIPE_BITS = Math.max(3, Math.min(6, 32 - Integer.numberOfLeadingZeros(Runtime.getRuntime().availableProcessors() * 4 - 1)));
    private static final int STRIPES = 1 << STRIPE_BITS;

    private final AtomicLongArray counts = new AtomicLongArray(STRIPES * BUCKETS);
    private final LongAdder sum = new LongAdder();
    // per stripe, padded to a cache line each
    private final AtomicLongArray max = new AtomicLongArray(STRIPES * 8);

    /** The bucket of {@code nanos}: exact below 16, then 16 buckets per power of two. */
    static int bucket(long nanos)
    {
        long value = Math.max(0, Math.min(nanos, LIMIT - 1));
        int exponent = Math.max(0, 63 - Long.numberOfLeadingZeros(value) - SUB_BITS);
        return exponent * SUB + (int) (value >>> exponent);
    }

    /** The smallest value above bucket {@code index}: its exclusive upper bound, in nanoseconds. */
    public static long upperBound(int index)
    {
        int exponent = Math.max(0, index / SUB - 1);
        long mantissa = index - (long) exponent * SUB;
        return (mantissa + 1) << exponent;
    }

    public void record(long nanos)
    {
        long value = Math.max(0, nanos);
        // Fibonacci hashing spreads consecutive thread ids (a pool's workers) over the stripes
        int stripe = (int) ((Thread.currentThread().getId() * 0x9E3779B97F4A7C15L) >>> (64 - STRIPE_BITS));
        counts.incrementAndGet(stripe * BUCKETS + bucket(value));
        sum.add(value);
        int slot = stripe * 8;
        long seen = max.get(slot);
        while (value > seen && !max.compareAndSet(slot, seen, value)) {
            seen = max.get(slot);
        }
    }

    /** What has been recorded so far; values recorded meanwhile may or may not be in it. */
    public Snapshot snapshot()
    {
        long[] buckets = new long[BUCKETS];
        long count = 0;
        for (int stripe = 0; stripe < STRIPES; stripe++) {
            for (int i = 0; i < BUCKETS; i++) {
                long n = counts.get(stripe * BUCKETS + i);
                buckets[i] += n;
                count += n;
            }
        }
        long highest = 0;
        for (int stripe = 0; stripe < STRIPES; stripe++) {
            highest = Math.max(highest, max.get(stripe * 8));
        }
        return new Snapshot(buckets, count, sum.sum(), highest);
    }

    /**
     * Counts per bucket at one moment. {@link #minus} gives what was recorded between two snapshots,
     * for rates and percentiles over a window.
     */
    public static final class Snapshot
    {
        public static final Snapshot EMPTY = new Snapshot(new long[BUCKETS], 0, 0, 0);

        private final long[] buckets;
        private final long count;
        private final long sum;
        private final long max;

        Snapshot(long[] buckets, long count, long sum, long max)
        {
            this.buckets = buckets;
            this.count = count;
            this.sum = sum;
            this.max = max;
        }

        /** Values recorded. */
        public long count()
        {
            return count;
        }

        /** Their sum, in nanoseconds. */
        public long sum()
        {
            return sum;
        }

        /** The largest value recorded (in a difference: the largest of the later snapshot, clamped to its buckets). */
        public long max()
        {
            return max;
        }

        /** The count of bucket {@code index} ({@link #upperBound(int)}). */
        public long bucketCount(int index)
        {
            return buckets[index];
        }

        /** Values below {@code bound} nanoseconds, where {@code bound} is a bucket's upper bound; otherwise those of the buckets wholly below it. */
        public long countBelow(long bound)
        {
            long n = 0;
            for (int i = 0; i < BUCKETS && upperBound(i) <= bound; i++) {
                n += buckets[i];
            }
            return n;
        }

        /**
         * The value at {@code percentile} (0 to 100), as the upper bound of its bucket, so never below
         * the true value by more than the bucket's width; never above the largest value recorded.
         * 0 when nothing was recorded.
         */
        public long percentile(double percentile)
        {
            if (count == 0) {
                return 0;
            }
            long rank = Math.max(1, (long) Math.ceil(percentile / 100 * count));
            long seen = 0;
            for (int i = 0; i < BUCKETS; i++) {
                seen += buckets[i];
                if (seen >= rank) {
                    long bound = upperBound(i) - 1;
                    return max > 0 ? Math.min(bound, max) : bound;
                }
            }
            return max;
        }

        /** What was recorded after {@code earlier} up to this snapshot. */
        public Snapshot minus(Snapshot earlier)
        {
            long[] difference = new long[BUCKETS];
            long highest = 0;
            for (int i = 0; i < BUCKETS; i++) {
                difference[i] = Math.max(0, buckets[i] - earlier.buckets[i]);
                if (difference[i] > 0) {
                    highest = upperBound(i) - 1;
                }
            }
            return new Snapshot(difference, count - earlier.count, sum - earlier.sum, Math.min(highest, max));
        }

        @Override
        public String toString()
        {
            return "Snapshot{count=" + count + ", sum=" + sum + ", max=" + max + ", buckets=" + Arrays.stream(buckets).filter(n -> n > 0).count() + " used}";
        }
    }

    /** Three significant digits, as the histogram keeps them: {@code 41.2us}, {@code 412us}, {@code 1.21ms}, {@code 2.50s}. */
    public static String format(long nanos)
    {
        double value = nanos / 1e3;
        String unit = "us";
        if (nanos >= 1_000_000_000L) {
            value = nanos / 1e9;
            unit = "s";
        }
        else if (nanos >= 1_000_000L) {
            value = nanos / 1e6;
            unit = "ms";
        }
        String digits = value >= 100 ? String.format(Locale.ROOT, "%.0f", value)
                : value >= 10 ? String.format(Locale.ROOT, "%.1f", value) : String.format(Locale.ROOT, "%.2f", value);
        return digits + unit;
    }
}
