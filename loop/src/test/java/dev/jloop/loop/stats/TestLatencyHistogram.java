package dev.jloop.loop.stats;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestLatencyHistogram
{
    @Test
    void bucketsAreContiguousAndAtMostOneSixteenthWide()
    {
        long lower = 0;
        for (int i = 0; i < LatencyHistogram.BUCKETS; i++) {
            long upper = LatencyHistogram.upperBound(i);
            assertTrue(upper > lower, "bucket " + i);
            assertEquals(i, LatencyHistogram.bucket(lower), "lower bound of bucket " + i);
            assertEquals(i, LatencyHistogram.bucket(upper - 1), "last value of bucket " + i);
            assertTrue(upper - lower <= Math.max(1, lower / 16), "bucket " + i + " [" + lower + ", " + upper + ")");
            lower = upper;
        }
        assertEquals(LatencyHistogram.BUCKETS - 1, LatencyHistogram.bucket(Long.MAX_VALUE));
        assertEquals(0, LatencyHistogram.bucket(-5));
    }

    @Test
    void percentilesWithinABucketOfTheTruth()
            throws Exception
    {
        LatencyHistogram histogram = new LatencyHistogram();
        List<Long> values = new ArrayList<>();
        Random random = new Random(14);
        List<Thread> threads = new ArrayList<>();
        long[][] perThread = new long[4][25_000];
        for (long[] chunk : perThread) {
            for (int i = 0; i < chunk.length; i++) {
                chunk[i] = (long) Math.exp(random.nextDouble() * 20);
                values.add(chunk[i]);
            }
            threads.add(new Thread(() -> {
                for (long value : chunk) {
                    histogram.record(value);
                }
            }));
        }
        threads.forEach(Thread::start);
        for (Thread thread : threads) {
            thread.join();
        }
        values.sort(null);
        LatencyHistogram.Snapshot snapshot = histogram.snapshot();
        assertEquals(values.size(), snapshot.count());
        assertEquals(values.stream().mapToLong(Long::longValue).sum(), snapshot.sum());
        assertEquals(values.get(values.size() - 1), snapshot.max());
        for (double p : new double[] {1, 50, 90, 99, 99.9, 100}) {
            long truth = values.get((int) Math.ceil(p / 100 * values.size()) - 1);
            long reported = snapshot.percentile(p);
            assertTrue(reported >= truth && reported <= truth + Math.max(1, truth / 16), "p" + p + ": " + reported + " for " + truth);
        }
        long below = values.stream().filter(value -> value < 1024).count();
        assertEquals(below, snapshot.countBelow(1024));

        histogram.record(7);
        histogram.record(7);
        LatencyHistogram.Snapshot window = histogram.snapshot().minus(snapshot);
        assertEquals(2, window.count());
        assertEquals(14, window.sum());
        assertEquals(7, window.percentile(50));
        assertEquals(7, window.percentile(99));
    }
}
