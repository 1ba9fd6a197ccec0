package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.RecordingBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the readahead filter reads below, and that what it serves is never older than a write that completed before the read. */
class TestReadaheadFilter
{
    private static final int BLOCK = 4096;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final Requests requests = new Requests();

    @Test
    void sequentialReadsBecomeFewerLargerReadsBelow()
            throws Exception
    {
        int size = 8 << 20;
        byte[] content = new byte[size];
        new Random(1).nextBytes(content);
        MemoryBackingFile memory = new MemoryBackingFile(size);
        memory.write(0, content);
        RecordingBackingFile below = new RecordingBackingFile(memory);
        BackingFile file = wrap(below, "1M");

        int chunk = 16 * 1024;
        for (int pos = 0; pos < size; pos += chunk) {
            byte[] read = new byte[chunk];
            assertEquals(chunk, requests.read(file, pos, read));
            assertArrayEquals(Arrays.copyOfRange(content, pos, pos + chunk), read, "at " + pos);
        }
        List<long[]> reads = reads(below);
        assertTrue(reads.size() < 30, size / chunk + " reads of 16K became " + reads.size() + " below: " + below.ops());
        assertEquals(1 << 20, reads.stream().mapToLong(read -> read[1]).max().orElseThrow(), "windows grow to readahead-max: " + below.ops());
        long large = reads.stream().filter(read -> read[1] >= 256 * 1024).mapToLong(read -> read[1]).sum();
        assertTrue(large > size * 3L / 4, "most bytes come in large reads: " + below.ops());
        assertTrue(reads.stream().mapToLong(read -> read[1]).sum() <= size, "nothing read twice: " + below.ops());
        file.close();
        assertTrue(below.isClosed());
        requests.assertIdle();
    }

    @Test
    void readsThatJumpAroundAreNotReadAhead()
            throws Exception
    {
        RecordingBackingFile below = new RecordingBackingFile(new MemoryBackingFile(8 << 20));
        BackingFile file = wrap(below, "2M");
        for (int i = 0; i < 50; i++) {
            long pos = (long) (100 - 2 * i) * 65536;
            assertEquals(4096, requests.read(file, pos, new byte[4096]));
        }
        assertEquals(50, reads(below).size(), below.ops().toString());
        assertTrue(reads(below).stream().allMatch(read -> read[1] == 4096), below.ops().toString());
        file.close();
    }

    @Test
    void aWriteOrTrimDropsWhatItOverlaps()
            throws Exception
    {
        int size = 4 << 20;
        MemoryBackingFile memory = new MemoryBackingFile(size);
        byte[] ones = new byte[size];
        Arrays.fill(ones, (byte) 1);
        memory.write(0, ones);
        ReadaheadFilterFactory.ReadaheadBackingFile file = (ReadaheadFilterFactory.ReadaheadBackingFile) wrap(memory, "1M");
        for (int pos = 0; pos < 256 * 1024; pos += 8192) {
            assertEquals(1, requests.readFully(file, pos, 8192)[0]);
        }
        assertTrue(file.cachedBytes() > 0, "read ahead");
        assertEquals(BLOCK, requests.write(file, 256 * 1024 + 3 * BLOCK, BLOCK, (byte) 2));
        assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 256 * 1024 + 5 * BLOCK, BLOCK));
        byte[] expected = new byte[64 * 1024];
        Arrays.fill(expected, (byte) 1);
        Arrays.fill(expected, 3 * BLOCK, 4 * BLOCK, (byte) 2);
        Arrays.fill(expected, 5 * BLOCK, 6 * BLOCK, (byte) 0);
        byte[] read = new byte[64 * 1024];
        for (int i = 0; i < read.length; i += 8192) {
            System.arraycopy(requests.readFully(file, 256 * 1024 + i, 8192), 0, read, i, 8192);
        }
        assertArrayEquals(expected, read, "the written block and the trimmed one, read through the filter after they completed");
        file.close();
        assertEquals(0, file.cachedBytes(), "close lets go of the windows");
    }

    /**
     * Readers scan sequentially, several reads in flight each, while a writer rewrites blocks: every
     * block is stamped with its number and version, and a read must return, for each block, a
     * version no older than the one whose write completed before the read was submitted and no newer
     * than the last one started before it completed. Below, reads are slow and jittery, and with
     * short transfers come back in pieces.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void readsNeverSeeDataOlderThanAWriteThatCompletedBeforeThem(boolean shortTransfers)
            throws Exception
    {
        int blocks = 1024;
        MemoryBackingFile.Builder builder = MemoryBackingFile.builder((long) blocks * BLOCK).queued(2);
        if (shortTransfers) {
            // whole blocks: a block read in two pieces could hold two versions, with or without the filter
            builder.maxTransfer(5 * BLOCK);
        }
        MemoryBackingFile memory = builder.build();
        for (int block = 0; block < blocks; block++) {
            memory.write((long) block * BLOCK, stamp(block, 0));
        }
        BackingFile slow = new DelayFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("delay-read", "1ms", "delay-jitter", "1"));
        BackingFile file = wrap(slow, "256K");
        AtomicLongArray started = new AtomicLongArray(blocks);
        AtomicLongArray completed = new AtomicLongArray(blocks);
        AtomicBoolean stop = new AtomicBoolean();
        Queue<String> failures = new ConcurrentLinkedQueue<>();
        AtomicInteger checked = new AtomicInteger();

        Thread writer = new Thread(() -> {
            Random random = new Random(2);
            try {
                while (!stop.get()) {
                    int block = random.nextInt(blocks);
                    long version = started.incrementAndGet(block);
                    long res = requests.write(file, (long) block * BLOCK, stamp(block, version), 0);
                    if (res != BLOCK) {
                        failures.add("write of block " + block + ": " + res);
                    }
                    completed.set(block, version);
                }
            }
            catch (Exception e) {
                failures.add(e.toString());
            }
        }, "writer");
        List<Thread> readers = new ArrayList<>();
        for (int r = 0; r < 2; r++) {
            long seed = r;
            readers.add(new Thread(() -> {
                Random random = new Random(seed);
                try {
                    for (int scan = 0; scan < 12; scan++) {
                        int chunkBlocks = 1 + random.nextInt(4);
                        int first = random.nextInt(blocks / 2);
                        Queue<Pending> inFlight = new ArrayDeque<>();
                        for (int block = first; block + chunkBlocks <= blocks; block += chunkBlocks) {
                            inFlight.add(read(file, block, chunkBlocks, completed));
                            if (inFlight.size() == 4) {
                                inFlight.remove().check(started, failures, checked);
                            }
                        }
                        while (!inFlight.isEmpty()) {
                            inFlight.remove().check(started, failures, checked);
                        }
                    }
                }
                catch (Exception e) {
                    failures.add(e.toString());
                }
            }, "reader-" + r));
        }
        writer.start();
        readers.forEach(Thread::start);
        for (Thread reader : readers) {
            reader.join(TimeUnit.MINUTES.toMillis(2));
        }
        stop.set(true);
        writer.join(TimeUnit.MINUTES.toMillis(1));
        assertEquals(List.of(), List.copyOf(failures).subList(0, Math.min(10, failures.size())));
        assertTrue(checked.get() > 1000, "blocks checked: " + checked.get());
        file.close();
        requests.assertIdle();
    }

    @Test
    void aFileThatCachesItselfIsOnlyAskedTo()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(8 << 20);
        RecordingBackingFile below = new RecordingBackingFile(memory, memory.capabilities().toBuilder().cache(true).queueDepth(8).build(), false);
        BackingFile file = wrap(below, "1M");
        assertEquals(8, file.capabilities().queueDepth(), "no read of its own, no slot taken");
        for (int pos = 0; pos < 4 << 20; pos += 65536) {
            assertEquals(65536, requests.read(file, pos, new byte[65536]));
        }
        assertEquals(64, reads(below).size(), "every read goes below: " + below.ops());
        List<String> hints = below.ops().stream().filter(op -> op.startsWith("cache ")).toList();
        assertTrue(hints.size() >= 3 && hints.size() < 20, below.ops().toString());
        assertTrue(hints.contains("cache " + (2 * 65536) + "+131072"), "the first hint follows the second read: " + hints);
        assertTrue(hints.stream().anyMatch(hint -> hint.endsWith("+1048576")), "and grows to readahead-max: " + hints);
        file.close();
    }

    @Test
    void aSlotOfTheFileBelowIsKeptForReadingAhead()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        Capabilities capabilities = memory.capabilities();
        assertEquals(7, wrap(new RecordingBackingFile(memory, capabilities.toBuilder().queueDepth(8).build(), false), "1M").capabilities().queueDepth());
        assertEquals(0, wrap(memory, "1M").capabilities().queueDepth(), "a file that never waits still never waits");

        RecordingBackingFile one = new RecordingBackingFile(memory, capabilities.toBuilder().queueDepth(1).build(), false);
        BackingFile file = wrap(one, "1M");
        assertEquals(1, file.capabilities().queueDepth());
        for (int pos = 0; pos < 1 << 20; pos += 65536) {
            requests.read(file, pos, new byte[65536]);
        }
        assertEquals(16, reads(one).size(), "a file that takes one request at a time is not read ahead of: " + one.ops());
    }

    @Test
    void closeWaitsForTheReadsItMadeItself()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(4 << 20);
        ScheduledExecutorService later = Executors.newSingleThreadScheduledExecutor();
        AtomicInteger reading = new AtomicInteger();
        AtomicInteger readingAtClose = new AtomicInteger(-1);
        // reads beyond the first two blocks, the window read ahead, complete half a second late
        BackingFile slowAhead = new ForwardingBackingFile(memory)
        {
            @Override
            public long readIter(Kiocb kiocb)
            {
                reading.incrementAndGet();
                long delay = kiocb.pos() >= 2 * BLOCK ? 500 : 0;
                return passDown(kiocb, (child, res) -> later.schedule(() -> {
                    reading.decrementAndGet();
                    kiocb.complete(res);
                }, delay, TimeUnit.MILLISECONDS));
            }

            @Override
            public void close()
                    throws IOException
            {
                readingAtClose.set(reading.get());
                super.close();
            }
        };
        try {
            BackingFile file = wrap(slowAhead, "1M");
            assertEquals(BLOCK, requests.read(file, 0, new byte[BLOCK]));
            assertEquals(BLOCK, requests.read(file, BLOCK, new byte[BLOCK]));
            assertEquals(1, reading.get(), "the window after the second read is being read");
            file.close();
            assertEquals(0, readingAtClose.get(), "the file below was closed with a read in flight");
        }
        finally {
            later.shutdownNow();
        }
    }

    @Test
    void theWindowIsChecked()
    {
        ReadaheadFilterFactory factory = new ReadaheadFilterFactory();
        assertEquals("--readahead-max: 4 KiB is not from 64K to 256M",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("readahead-max", "4K"))).getMessage());
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("readahead-max", "lots")));
        factory.validate(Map.of());
    }

    private BackingFile wrap(BackingFile below, String max)
    {
        return new ReadaheadFilterFactory().wrap(below, BackendConfig.of(dir.resolve("disk")), Map.of("readahead-max", max));
    }

    /** The reads that reached {@code below}, as {pos, count}. */
    private static List<long[]> reads(RecordingBackingFile below)
    {
        return below.ops().stream()
                .filter(op -> op.startsWith("read "))
                .map(op -> op.substring("read ".length()).split("\\+"))
                .map(parts -> new long[] {Long.parseLong(parts[0]), Long.parseLong(parts[1])})
                .toList();
    }

    private static byte[] stamp(int block, long version)
    {
        ByteBuffer buffer = ByteBuffer.allocate(BLOCK);
        while (buffer.hasRemaining()) {
            buffer.putInt(block).putInt((int) version);
        }
        return buffer.array();
    }

    private Pending read(BackingFile file, int first, int count, AtomicLongArray completed)
    {
        long[] atLeast = new long[count];
        for (int i = 0; i < count; i++) {
            atLeast[i] = completed.get(first + i);
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(count * BLOCK);
        IovIter iter = KvecIter.of(IovIter.Direction.DEST, buffer);
        CompletableFuture<Long> done = new CompletableFuture<>();
        readRest(file, iter, (long) first * BLOCK, 0, done);
        return new Pending(first, atLeast, buffer, done);
    }

    /** Reads what is left of {@code iter}, resubmitting after short reads (from the submitting thread), as the loop device does. */
    private void readRest(BackingFile file, IovIter iter, long pos, long done, CompletableFuture<Long> result)
    {
        requests.submit(requests.aio.alloc().initRw(Kiocb.Op.READ, file, iter, pos + done, 0)).whenComplete((res, failure) -> {
            if (failure != null || res <= 0 || iter.count() == 0) {
                result.complete(failure != null ? -1 : res <= 0 ? res : done + res);
                return;
            }
            CompletableFuture.runAsync(() -> readRest(file, iter, pos, done + res, result));
        });
    }

    private record Pending(int first, long[] atLeast, ByteBuffer buffer, CompletableFuture<Long> done)
    {
        void check(AtomicLongArray started, Queue<String> failures, AtomicInteger checked)
                throws Exception
        {
            long res = done.get(60, TimeUnit.SECONDS);
            if (res != (long) atLeast.length * BLOCK) {
                failures.add("read of blocks " + first + "+" + atLeast.length + ": " + res);
                return;
            }
            for (int i = 0; i < atLeast.length; i++) {
                int block = first + i;
                long atMost = started.get(block);
                int expectedBlock = buffer.getInt(i * BLOCK);
                long version = buffer.getInt(i * BLOCK + 4);
                for (int at = i * BLOCK; at < (i + 1) * BLOCK; at += 8) {
                    if (buffer.getInt(at) != expectedBlock || buffer.getInt(at + 4) != version) {
                        failures.add("block " + block + " is torn at byte " + (at - i * BLOCK));
                        return;
                    }
                }
                if (expectedBlock != block || version < atLeast[i] || version > atMost) {
                    failures.add("block " + block + " read as block " + expectedBlock + " version " + version + ", expected a version from "
                            + atLeast[i] + " to " + atMost);
                }
                checked.incrementAndGet();
            }
        }
    }
}
