package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.testkit.MemoryBackingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.jloop.filter.Requests.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the retry filter does with requests that fail, timed with wide bounds. */
class TestRetryFilter
{
    private final Requests requests = new Requests();
    private final MemoryBackingFile memory = new MemoryBackingFile(1 << 20);

    @AfterEach
    void nothingLeft()
    {
        requests.assertIdle();
    }

    @Test
    void requestsThatFailAFewTimesSucceedAfterTheirRetriesWithoutAThreadEach()
            throws Exception
    {
        // each request fails three times; the waits are 50, 100 and 200 ms
        Flaky flaky = new Flaky(memory, 3, Errno.EIO);
        BackingFile file = wrap(flaky, Map.of("retries", "3", "retry-delay", "50ms"));
        int threadsBefore = Thread.activeCount();
        long start = System.nanoTime();
        List<CompletableFuture<Long>> writes = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            writes.add(requests.startWrite(file, 4096L * i, block((byte) i)));
        }
        assertTrue(Thread.activeCount() <= threadsBefore + 1, "100 requests waiting to retry, " + (Thread.activeCount() - threadsBefore) + " new threads");
        for (CompletableFuture<Long> write : writes) {
            assertEquals(4096, await(write));
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis >= 340 && millis < 3000, "three retries after 50, 100 and 200 ms took " + millis + " ms");
        assertEquals(400, flaky.attempts.get(), "each request four times");
        byte[] read = new byte[4096];
        memory.read(4096L * 99, read);
        assertArrayEquals(block((byte) 99), read);
    }

    @Test
    void beyondItsRetriesARequestGetsTheLastError()
            throws Exception
    {
        Flaky flaky = new Flaky(memory, 10, Errno.EIO, Errno.EAGAIN, Errno.ESHUTDOWN);
        BackingFile file = wrap(flaky, Map.of("retries", "2", "retry-delay", "40ms", "retry-exponential", "no"));
        long start = System.nanoTime();
        assertEquals(-Errno.ESHUTDOWN, requests.read(file, 0, new byte[4096]));
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis >= 75 && millis < 3000, "two retries 40 ms apart took " + millis + " ms");
        assertEquals(3, flaky.attempts.get());
    }

    @Test
    void errorsThatWouldOnlyComeBackAndFailedFlushesAreNotRetried()
            throws Exception
    {
        BackingFile readOnly = wrap(MemoryBackingFile.builder(1 << 20).readOnly(true).build(), Map.of("retry-delay", "5s"));
        long start = System.nanoTime();
        assertEquals(-Errno.EPERM, requests.write(readOnly, 0, block((byte) 1), 0));
        Flaky noZeroing = new Flaky(memory, 100, Errno.EOPNOTSUPP);
        assertEquals(-Errno.EOPNOTSUPP, requests.fallocate(wrap(noZeroing, Map.of("retry-delay", "5s")), Fallocate.ZERO_RANGE, 0, 4096));
        Flaky failingFlush = new Flaky(memory, 100, Errno.EIO);
        assertEquals(-Errno.EIO, requests.flush(wrap(failingFlush, Map.of("retry-delay", "5s")), true));
        assertTrue(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start) < 4000, "no request waited for a retry");
        assertEquals(1, noZeroing.attempts.get());
        assertEquals(1, failingFlush.attempts.get());
    }

    @Test
    void anAttemptThatFailedAfterMovingTheIteratorIsRetriedFromWhereTheRequestStarted()
            throws Exception
    {
        AtomicInteger attempts = new AtomicInteger();
        BackingFile careless = new ForwardingBackingFile(memory)
        {
            @Override
            public long writeIter(Kiocb kiocb)
            {
                if (attempts.incrementAndGet() == 1) {
                    // breaks the contract: moves the iterator, and fails
                    kiocb.iter().advance(1000);
                    return -Errno.EIO;
                }
                return super.writeIter(kiocb);
            }
        };
        byte[] data = new byte[8192];
        new Random(41).nextBytes(data);
        assertEquals(8192, requests.write(wrap(careless, Map.of("retry-delay", "10ms")), 0, data, 0));
        byte[] written = new byte[8192];
        memory.read(0, written);
        assertArrayEquals(data, written);
    }

    @Test
    void overAnErrorFilterFailingHalfTheRequestsItServesCorrectData()
            throws Exception
    {
        // retry first, closest to the frontend, as --filter retry --filter error:error-rate=50%
        BackingFile errors = new ErrorFilterFactory().wrap(memory, BackendConfig.of(Path.of("disk")), Map.of("error-rate", "50%"));
        BackingFile file = wrap(errors, Map.of("retries", "40", "retry-delay", "1ms", "retry-exponential", "no"));
        Random random = new Random(42);
        byte[] model = new byte[1 << 20];
        for (int round = 0; round < 10; round++) {
            List<CompletableFuture<Long>> writes = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                // one write in each 64 KiB, in flight together
                int pos = (i << 16) + random.nextInt(1000);
                byte[] data = new byte[1 + random.nextInt(60_000)];
                random.nextBytes(data);
                writes.add(requests.startWrite(file, pos, data));
                System.arraycopy(data, 0, model, pos, data.length);
            }
            for (CompletableFuture<Long> write : writes) {
                assertTrue(await(write) > 0);
            }
            for (int i = 0; i < 16; i++) {
                int pos = random.nextInt(model.length - 100_000);
                byte[] read = new byte[1 + random.nextInt(100_000)];
                assertEquals(read.length, requests.read(file, pos, read));
                assertArrayEquals(Arrays.copyOfRange(model, pos, pos + read.length), read, "round " + round + ": read at " + pos);
            }
        }
        byte[] actual = new byte[model.length];
        memory.read(0, actual);
        assertArrayEquals(model, actual);
    }

    @Test
    void optionsAreChecked()
    {
        RetryFilterFactory factory = new RetryFilterFactory();
        assertEquals("--retry-delay: the wait before a retry cannot be 0",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("retry-delay", "0"))).getMessage());
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("retries", "many")));
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("retry-exponential", "sometimes")));
        factory.validate(Map.of("retries", "0", "retry-delay", "500ms", "retry-exponential", "no"));
    }

    private BackingFile wrap(BackingFile below, Map<String, String> options)
    {
        return new RetryFilterFactory().wrap(below, BackendConfig.of(Path.of("disk")), options);
    }

    private static byte[] block(byte value)
    {
        byte[] bytes = new byte[4096];
        Arrays.fill(bytes, value);
        return bytes;
    }

    /** Fails the first {@code failures} attempts at each request (by position and operation) with the given errors in turn. */
    private static final class Flaky
            extends ForwardingBackingFile
    {
        final AtomicInteger attempts = new AtomicInteger();
        private final int failures;
        private final int[] errors;
        private final Map<String, AtomicInteger> seen = new ConcurrentHashMap<>();

        Flaky(BackingFile next, int failures, int... errors)
        {
            super(next);
            this.failures = failures;
            this.errors = errors;
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            int failure = attempt(kiocb);
            return failure != 0 ? failure : super.readIter(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            int failure = attempt(kiocb);
            return failure != 0 ? failure : super.writeIter(kiocb);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            int failure = attempt(kiocb);
            return failure != 0 ? failure : super.fsync(kiocb);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            int failure = attempt(kiocb);
            return failure != 0 ? failure : super.fallocate(kiocb);
        }

        /** 0, or the {@code -errno} this attempt fails with. */
        private int attempt(Kiocb kiocb)
        {
            attempts.incrementAndGet();
            int n = seen.computeIfAbsent(kiocb.op() + "@" + kiocb.pos(), key -> new AtomicInteger()).getAndIncrement();
            return n < failures ? -errors[n % errors.length] : 0;
        }
    }
}
