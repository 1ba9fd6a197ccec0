package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.RecordingBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** When the cacheextents filter asks the file below, and that its answers are the file's. */
class TestCacheExtentsFilter
{
    private static final int BLOCK = MemoryBackingFile.BLOCK_SIZE;
    private static final int DATA = ExtentSink.DATA;
    private static final int HOLE = ExtentSink.HOLE | ExtentSink.ZERO;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final Requests requests = new Requests();

    @Test
    void repeatedQueriesAskTheFileBelowOnceAndAWriteInTheRangeAsksAgain()
            throws Exception
    {
        MemoryBackingFile memory = sparse(8 << 20, new int[] {0, 3, 4, 100, 2047});
        RecordingBackingFile below = new RecordingBackingFile(memory);
        BackingFile file = wrap(below);

        for (int i = 0; i < 3; i++) {
            assertEquals(extents(memory, 0, 8 << 20), extents(file, 0, 8 << 20));
            assertEquals(extents(memory, 3 * BLOCK + 100, 5000), extents(file, 3 * BLOCK + 100, 5000));
            assertEquals(extents(memory, 64 * BLOCK, 64 * BLOCK), extents(file, 64 * BLOCK, 64 * BLOCK));
        }
        assertEquals(List.of("extents 0+8388608"), extentsAsked(below), "one question, at the first query");

        assertEquals(BLOCK, requests.write(file, 50L * BLOCK, BLOCK, (byte) 1));
        assertEquals(List.of(new Extent(48L * BLOCK, 2 * BLOCK, HOLE), new Extent(50L * BLOCK, BLOCK, DATA), new Extent(51L * BLOCK, 13 * BLOCK, HOLE)),
                extents(file, 48L * BLOCK, 16 * BLOCK), "the write is seen");
        assertEquals(List.of("extents 0+8388608", "extents 196608+8192000"), extentsAsked(below), "asked again, from the query");

        assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 100L * BLOCK, BLOCK));
        assertEquals(List.of(new Extent(99L * BLOCK, 2 * BLOCK, HOLE)), extents(file, 99L * BLOCK, 2 * BLOCK), "the trim is seen");
        file.close();
        requests.assertIdle();
    }

    @Test
    void aChangeCutsTheAnswerShortWhereItBegins()
            throws Exception
    {
        MemoryBackingFile memory = sparse(8 << 20, new int[] {300, 600});
        RecordingBackingFile below = new RecordingBackingFile(memory);
        BackingFile file = wrap(below);
        extents(file, 256L * BLOCK, BLOCK);
        assertEquals(List.of("extents 1048576+7340032"), extentsAsked(below));

        assertEquals(BLOCK, requests.write(file, 10L * BLOCK, BLOCK, (byte) 1));
        extents(file, 256L * BLOCK, 512 * BLOCK);
        assertEquals(1, extentsAsked(below).size(), "a write before the answer leaves it: " + below.ops());

        assertEquals(0, requests.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 1000L * BLOCK, 10));
        assertEquals(extents(memory, 256L * BLOCK, 700 * BLOCK), extents(file, 256L * BLOCK, 700 * BLOCK));
        assertEquals(1, extentsAsked(below).size(), "the part before a change stays: " + below.ops());
        assertEquals(List.of(new Extent(1000L * BLOCK, BLOCK, DATA)), extents(file, 1000L * BLOCK, BLOCK));
        assertEquals(2, extentsAsked(below).size(), "from the change on, asked again: " + below.ops());
    }

    @Test
    void moreExtentsThanAnAnswerKeepsComeStraightFromTheFile()
            throws Exception
    {
        int blocks = 3 * CacheExtentsFilterFactory.CacheExtentsBackingFile.MAX_EXTENTS;
        int[] data = new int[blocks / 2];
        for (int i = 0; i < data.length; i++) {
            data[i] = 2 * i;
        }
        MemoryBackingFile memory = sparse((long) blocks * BLOCK, data);
        RecordingBackingFile below = new RecordingBackingFile(memory);
        BackingFile file = wrap(below);
        assertEquals(extents(memory, 0, (long) blocks * BLOCK), extents(file, 0, (long) blocks * BLOCK));
        assertEquals(2, extentsAsked(below).size(), below.ops().toString());
        assertEquals(extents(memory, 0, 1000L * BLOCK), extents(file, 0, 1000L * BLOCK));
        assertEquals(2, extentsAsked(below).size(), "the first 1024 extents are kept: " + below.ops());

        AtomicInteger calls = new AtomicInteger();
        assertEquals(0, file.extents(0, (long) blocks * BLOCK, (offset, length, type) -> calls.incrementAndGet() < 3));
        assertEquals(3, calls.get(), "the sink stops the report");
    }

    @Test
    void anAnswerCollectedBeforeAChangeCompletedIsNotKept()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        CountDownLatch collected = new CountDownLatch(1);
        CountDownLatch changed = new CountDownLatch(1);
        // answers from before the change, and hands them over after it completed
        BackingFile slow = new ForwardingBackingFile(memory)
        {
            @Override
            public long extents(long offset, long length, ExtentSink sink)
            {
                List<Extent> before = TestCacheExtentsFilter.extents(memory, offset, length);
                collected.countDown();
                try {
                    changed.await();
                }
                catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                for (Extent extent : before) {
                    if (!sink.extent(extent.offset(), extent.length(), extent.type())) {
                        break;
                    }
                }
                return 0;
            }
        };
        BackingFile file = wrap(slow);
        CompletableFuture<List<Extent>> first = CompletableFuture.supplyAsync(() -> extents(file, 0, 1 << 20));
        assertTrue(collected.await(30, TimeUnit.SECONDS));
        assertEquals(BLOCK, requests.write(file, 8L * BLOCK, BLOCK, (byte) 1));
        changed.countDown();
        assertEquals(List.of(new Extent(0, 1 << 20, HOLE)), first.get(30, TimeUnit.SECONDS), "the query that ran alongside the write");
        assertEquals(List.of(new Extent(8L * BLOCK, BLOCK, DATA)), extents(file, 8L * BLOCK, BLOCK), "a query after the write completed");
    }

    /**
     * One thread changes blocks and checks right after each change that the filter reports it, while
     * others keep asking for the extents of the whole file, so that answers are being collected
     * while changes complete. The file below completes on its own threads.
     */
    @Test
    void noQueryMissesAChangeThatCompletedBeforeIt()
            throws Exception
    {
        int blocks = 512;
        MemoryBackingFile memory = MemoryBackingFile.builder((long) blocks * BLOCK).queued(2).build();
        BackingFile file = wrap(memory);
        AtomicBoolean stop = new AtomicBoolean();
        Queue<String> failures = new ConcurrentLinkedQueue<>();
        List<Thread> askers = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Thread asker = new Thread(() -> {
                while (!stop.get()) {
                    file.extents(0, (long) blocks * BLOCK, (offset, length, type) -> true);
                }
            }, "asker-" + i);
            asker.start();
            askers.add(asker);
        }
        Random random = new Random(3);
        boolean[] written = new boolean[blocks];
        try {
            for (int i = 0; i < 3000 && failures.size() < 10; i++) {
                int block = random.nextInt(blocks);
                if (written[block]) {
                    assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, (long) block * BLOCK, BLOCK));
                }
                else {
                    assertEquals(BLOCK, requests.write(file, (long) block * BLOCK, BLOCK, (byte) 7));
                }
                written[block] = !written[block];
                List<Extent> seen = extents(file, (long) block * BLOCK, BLOCK);
                if (seen.size() != 1 || seen.get(0).type() != (written[block] ? DATA : HOLE)) {
                    failures.add("block " + block + " after " + (written[block] ? "a write" : "a trim") + ": " + seen);
                }
            }
        }
        finally {
            stop.set(true);
            for (Thread asker : askers) {
                asker.join(TimeUnit.SECONDS.toMillis(30));
            }
        }
        assertEquals(List.of(), List.copyOf(failures));
        file.close();
    }

    @Test
    void takesNoOptions()
    {
        assertThrows(IllegalArgumentException.class, () -> new CacheExtentsFilterFactory().validate(Map.of("cacheextents-size", "1M")));
    }

    private BackingFile wrap(BackingFile below)
    {
        return new CacheExtentsFilterFactory().wrap(below, BackendConfig.of(dir.resolve("disk")), Map.of());
    }

    private static MemoryBackingFile sparse(long size, int[] dataBlocks)
    {
        MemoryBackingFile memory = new MemoryBackingFile(size);
        byte[] block = new byte[BLOCK];
        block[0] = 1;
        for (int index : dataBlocks) {
            memory.write((long) index * BLOCK, block);
        }
        return memory;
    }

    private record Extent(long offset, long length, int type) {}

    private static List<Extent> extents(BackingFile file, long offset, long length)
    {
        List<Extent> extents = new ArrayList<>();
        assertEquals(0, file.extents(offset, length, (at, n, type) -> extents.add(new Extent(at, n, type))));
        return extents;
    }

    private static List<String> extentsAsked(RecordingBackingFile below)
    {
        return below.ops().stream().filter(op -> op.startsWith("extents ")).toList();
    }
}
