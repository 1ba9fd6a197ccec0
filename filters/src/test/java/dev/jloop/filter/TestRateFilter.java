package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Fallocate;
import dev.jloop.filter.RateFilterFactory.RateBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.jloop.filter.Requests.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the rate filter does to a stream of requests, timed with wide bounds (the machine is shared). */
class TestRateFilter
{
    private static final int CHUNK = 64 << 10;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final Requests requests = new Requests();
    private final MemoryBackingFile memory = new MemoryBackingFile(16 << 20);

    @AfterEach
    void nothingLeft()
    {
        requests.assertIdle();
    }

    @Test
    void writesGoAtTheRateAfterTheBurst()
            throws Exception
    {
        // 4 MiB/s with a quarter second's burst: 8 MiB take (8 - 1) / 4 = 1.75 s
        BackingFile file = wrap(Map.of("rate", "32M", "burstiness", "250ms"));
        byte[] data = new byte[8 << 20];
        new Random(3).nextBytes(data);
        int threadsBefore = Thread.activeCount();
        long start = System.nanoTime();
        List<CompletableFuture<Long>> writes = writeAll(file, data);
        long atOnce = writes.stream().filter(CompletableFuture::isDone).count();
        // 16 fit the burst; a few more may, as the bucket fills while the loop submits
        assertTrue(atOnce >= 16 && atOnce < 48, atOnce + " writes of 64 KiB went at once; the burst holds 16");
        assertTrue(Thread.activeCount() <= threadsBefore + 1, "128 writes waiting, " + (Thread.activeCount() - threadsBefore) + " new threads");
        for (CompletableFuture<Long> write : writes) {
            assertEquals(CHUNK, await(write));
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis >= 1400 && millis < 3 * 1750, "8 MiB at 4 MiB/s after a 1 MiB burst took " + millis + " ms, expected about 1750");
        byte[] written = new byte[data.length];
        memory.read(0, written);
        assertArrayEquals(data, written);
    }

    @Test
    void readsWritesAndRequestsWithoutDataDoNotWaitForEachOther()
            throws Exception
    {
        BackingFile file = wrap(Map.of("rate", "8M", "burstiness", "100ms"));
        List<CompletableFuture<Long>> writes = writeAll(file, new byte[4 << 20]);
        long start = System.nanoTime();
        assertEquals(CHUNK, requests.read(file, 0, new byte[CHUNK]), "reads have a bucket of their own");
        assertEquals(0, requests.flush(file, true));
        assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 4 << 20, 1 << 20));
        assertEquals(0, requests.fallocate(file, Fallocate.ZERO_RANGE, 6 << 20, 1 << 20));
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis < 1500, "a read, a flush, a trim and a zero behind 4 MiB of writes at 1 MiB/s took " + millis + " ms");
        assertFalse(writes.get(writes.size() - 1).isDone(), "the writes are still waiting");
        for (CompletableFuture<Long> write : writes) {
            assertEquals(CHUNK, await(write));
        }
    }

    @Test
    void aShortTransferGivesBackWhatItDidNotMove()
            throws Exception
    {
        // reads of 64 KiB that move 4 KiB each: charged 64 KiB apiece, 16 of them would wait 2 s
        MemoryBackingFile shortReads = MemoryBackingFile.builder(1 << 20).maxTransfer(4096).build();
        BackingFile file = new RateFilterFactory().wrap(shortReads, BackendConfig.of(dir.resolve("disk")), Map.of("rate", "4M", "burstiness", "200ms"));
        long start = System.nanoTime();
        for (int i = 0; i < 16; i++) {
            assertEquals(4096, requests.read(file, (long) i * CHUNK, new byte[CHUNK]));
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis < 1000, "16 reads of 4 KiB at 512 KiB/s took " + millis + " ms: the unread bits were not given back");
    }

    @Test
    void theRateFileChangesTheLimitWhileServing()
            throws Exception
    {
        Path rateFile = dir.resolve("rate");
        RateBackingFile file = (RateBackingFile) wrap(Map.of("rate", "1G", "rate-file", rateFile.toString(), "burstiness", "100ms"));
        assertEquals(1L << 30, file.bitsPerSecond(), "no file yet: the option's rate");

        setRate(rateFile, "4M");
        awaitRate(file, 4L << 20);
        long millis = timed(() -> writeAllAndWait(file, new byte[1 << 20]));
        assertTrue(millis >= 1400 && millis < 6000, "1 MiB at 512 KiB/s took " + millis + " ms, expected about 1900");

        setRate(rateFile, "fast");
        Thread.sleep(1300);
        assertEquals(4L << 20, file.bitsPerSecond(), "a line that is no rate is ignored");
        Files.delete(rateFile);
        Thread.sleep(1300);
        assertEquals(4L << 20, file.bitsPerSecond(), "a removed file leaves the last rate");

        setRate(rateFile, "0");
        awaitRate(file, 0);
        millis = timed(() -> writeAllAndWait(file, new byte[8 << 20]));
        assertTrue(millis < 5000, "8 MiB without a limit took " + millis + " ms, where 4M would take 16 s");
        file.close();
    }

    @Test
    void optionsAreChecked()
    {
        assertEquals(16L << 20, RateFilterFactory.parseRate("16M"));
        assertEquals(100L << 10, RateFilterFactory.parseRate(" 100k "));
        assertEquals(1000, RateFilterFactory.parseRate("1000"));
        RateFilterFactory factory = new RateFilterFactory();
        assertEquals("--rate: 0 is no rate; leave it out for no limit",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("rate", "0"))).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("rate", "1.5M"))).getMessage()
                .startsWith("--rate: '1.5M' is not a rate: bits per second"));
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("rate", "16MiB")));
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("burstiness", "soon")));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("connection-rate", "1M"))).getMessage()
                .startsWith("the rate filter takes no option 'connection-rate'"));
    }

    private BackingFile wrap(Map<String, String> options)
    {
        return new RateFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), options);
    }

    /** Writes {@code data} at 0 in chunks of 64 KiB, all submitted at once. */
    private List<CompletableFuture<Long>> writeAll(BackingFile file, byte[] data)
    {
        List<CompletableFuture<Long>> writes = new ArrayList<>();
        for (int at = 0; at < data.length; at += CHUNK) {
            writes.add(requests.startWrite(file, at, Arrays.copyOfRange(data, at, at + CHUNK)));
        }
        return writes;
    }

    private void writeAllAndWait(BackingFile file, byte[] data)
            throws Exception
    {
        for (CompletableFuture<Long> write : writeAll(file, data)) {
            assertEquals(CHUNK, await(write));
        }
    }

    private static long timed(ThrowingRunnable action)
            throws Exception
    {
        long start = System.nanoTime();
        action.run();
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    }

    private interface ThrowingRunnable
    {
        void run()
                throws Exception;
    }

    /** As the filter's manual asks: a new file renamed over the old one. */
    private void setRate(Path rateFile, String rate)
            throws Exception
    {
        Path next = dir.resolve("rate.new");
        Files.writeString(next, rate + "\n");
        Files.move(next, rateFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static void awaitRate(RateBackingFile file, long bitsPerSecond)
            throws InterruptedException
    {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (file.bitsPerSecond() != bitsPerSecond && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertEquals(bitsPerSecond, file.bitsPerSecond(), "the rate file was not read again within 5 s");
    }
}
