package dev.jloop.backend.iouring;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.TargetTempDirFactory;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.Ring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The file's operations on a ring its submitter lent ({@link LentRing}), the way an event loop drives
 * it: a ring far too small for what is submitted (operations are held, then written at the next turn),
 * reads, FUA writes, fsync, punch hole and zero range, buffered and {@code O_DIRECT}; every result and
 * every byte checked, and the file's own ring left alone for what belongs on the lent one.
 */
class TestIoUringLentRing
{
    private static final int SIZE = 4 << 20;
    private static final int BLOCK = 4096;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private Path path;
    private byte[] content;
    private final AioKernel aio = new AioKernel();
    private IoUringBackingFile file;
    private Ring ring;
    private LentRing lent;
    private final AtomicInteger completed = new AtomicInteger();

    @BeforeEach
    void setUp()
            throws Exception
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), "io_uring unavailable: " + IoUring.unavailabilityCause());
        path = dir.resolve("disk");
        content = new byte[SIZE];
        new Random(11).nextBytes(content);
        Files.write(path, content);
    }

    @AfterEach
    void tearDown()
            throws Exception
    {
        if (file != null) {
            file.giveBack(lent);
            file.close();
        }
        if (ring != null) {
            ring.close();
        }
        assertEquals(0, aio.inFlight(), "kiocbs in flight");
        assertEquals(0, aio.allocated(), "kiocbs not freed");
    }

    /** A file with a lent ring of 16 SQEs, 8 of them kept for the owner: the file gets 8 at a time. */
    private void open(boolean direct)
            throws Exception
    {
        file = (IoUringBackingFile) new IoUringBackendFactory().open(new BackendConfig(path, false, direct, 64, Map.of()));
        ring = Ring.builder(16).open();
        ring.registerFiles(file.fileDescriptor());
        lent = new LentRing(ring, Thread.currentThread(), 8, 0);
        assertTrue(file.borrow(lent));
    }

    private void submit(Kiocb kiocb, long[] results, int i)
    {
        kiocb.initCallback((k, res) -> {
            results[i] = res;
            aio.free(k);
            completed.incrementAndGet();
        }, null);
        aio.submit(kiocb);
    }

    /** The owner's loop: write what is held, enter, reap; operations on the file's own ring complete on their own. */
    private void driveUntil(int total)
            throws Exception
    {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (completed.get() < total) {
            assertTrue(System.nanoTime() < deadline, "operations never completed: " + lent);
            while (lent.prepareHeld()) {
                ring.submit();
            }
            if (lent.inFlight() > 0) {
                ring.submitAndWait(1);
            }
            else {
                Thread.sleep(1);
            }
            ring.reap((userData, res, flags) -> {
                assertTrue((userData & LentRing.BORROWED) != 0, "a CQE without the borrowed bit: " + userData);
                lent.complete(userData, res, flags);
            });
        }
        assertFalse(lent.hasHeld());
        assertEquals(0, lent.inFlight());
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void readsBeyondTheRingsRoomAreHeldAndAllComplete(boolean direct)
            throws Exception
    {
        open(direct);
        int n = 64;
        ByteBuffer[] buffers = new ByteBuffer[n];
        long[] results = new long[n];
        long fileEnters = file.submitCalls();
        for (int i = 0; i < n; i++) {
            buffers[i] = DirectMemory.allocateAligned(2 * BLOCK);
            // two segments for every other read: READV on the lent ring
            KvecIter iter = i % 2 == 0
                    ? KvecIter.of(Direction.DEST, buffers[i])
                    : KvecIter.of(Direction.DEST, buffers[i].duplicate().limit(BLOCK), buffers[i].duplicate().position(BLOCK));
            submit(aio.alloc().initRw(Kiocb.Op.READ, file, iter, (long) i * 3 * BLOCK, 0), results, i);
        }
        assertTrue(lent.hasHeld(), "the 8 SQEs the file may take held every read");
        assertEquals(8, lent.inFlight());
        assertEquals(0, completed.get(), "completed before the owner entered");
        driveUntil(n);
        for (int i = 0; i < n; i++) {
            assertEquals(2 * BLOCK, results[i], "read " + i);
            assertArrayEquals(Arrays.copyOfRange(content, i * 3 * BLOCK, i * 3 * BLOCK + 2 * BLOCK), bytes(buffers[i]), "data of read " + i);
        }
        assertEquals(fileEnters, file.submitCalls(), "reads went on the file's own ring");
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void fuaWritesFsyncPunchAndZeroOnTheLentRing(boolean direct)
            throws Exception
    {
        open(direct);
        long fileEnters = file.submitCalls();
        int length = 128 << 10;
        ByteBuffer data = DirectMemory.allocateAligned(length);
        byte[] written = new byte[length];
        new Random(5).nextBytes(written);
        data.put(written).clear();
        long[] results = new long[5];
        submit(aio.alloc().initRw(Kiocb.Op.WRITE, file, KvecIter.of(Direction.SOURCE, data), 0, Kiocb.IOCB_DSYNC), results, 0);
        submit(aio.alloc().initFsync(file, true), results, 1);
        submit(aio.alloc().initFallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 1 << 20, 64 << 10), results, 2);
        submit(aio.alloc().initFallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 2 << 20, 8 << 10), results, 3);
        submit(aio.alloc().initFsync(file, false), results, 4);
        driveUntil(5);
        assertArrayEquals(new long[] {length, 0, 0, 0, 0}, results);

        byte[] expected = content.clone();
        System.arraycopy(written, 0, expected, 0, length);
        Arrays.fill(expected, 1 << 20, (1 << 20) + (64 << 10), (byte) 0);
        Arrays.fill(expected, 2 << 20, (2 << 20) + (8 << 10), (byte) 0);
        assertArrayEquals(expected, Files.readAllBytes(path));
        if (direct) {
            // writes and fallocates hold O_DIRECT block ranges: they stay on the file's ring
            assertTrue(file.submitCalls() > fileEnters, "direct writes left the file's ring");
        }
        else {
            assertEquals(fileEnters, file.submitCalls(), "buffered FUA write, fsync and fallocate went on the file's own ring");
        }
    }

    /**
     * A buffered 256 KiB write goes on the lent ring while fewer loops than processors lend theirs, and
     * is written in the submitting thread once as many do, until they give their rings back.
     */
    @Test
    void largeBufferedWritesAreInlineWhileEveryProcessorHasALoop()
            throws Exception
    {
        int processors = Runtime.getRuntime().availableProcessors();
        assumeTrue(processors > 1, "one processor: a single loop already has it to itself");
        open(false);
        int length = 256 << 10;
        long[] results = new long[3];
        // each write is driven to its end before anything is asserted: a write left on the lent ring would hold the file's close
        submit(write(1, 0, length), results, 0);
        int onRing = lent.inFlight();
        driveUntil(1);
        assertEquals(1, onRing, "one loop on " + processors + " processors wrote inline");

        // as many loops as processors, each lending a ring from its own thread
        CountDownLatch lentAll = new CountDownLatch(processors - 1);
        CountDownLatch giveBack = new CountDownLatch(1);
        List<Thread> loops = new ArrayList<>();
        for (int i = 1; i < processors; i++) {
            Thread loop = new Thread(() -> {
                try (Ring own = Ring.builder(4).open()) {
                    LentRing ownLent = new LentRing(own, Thread.currentThread(), 2, 0);
                    assertTrue(file.borrow(ownLent));
                    lentAll.countDown();
                    giveBack.await();
                    file.giveBack(ownLent);
                }
                catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            loop.start();
            loops.add(loop);
        }
        try {
            assertTrue(lentAll.await(10, TimeUnit.SECONDS));
            submit(write(2, length, length), results, 1);
            onRing = lent.inFlight();
            driveUntil(2);
            assertEquals(0, onRing, "with every processor's loop lending, the write went on the ring");
        }
        finally {
            giveBack.countDown();
            for (Thread loop : loops) {
                loop.join(10_000);
            }
        }
        submit(write(3, 2 * length, length), results, 2);
        onRing = lent.inFlight();
        driveUntil(3);
        assertEquals(1, onRing, "the loops gave their rings back, yet the write was inline");

        assertArrayEquals(new long[] {length, length, length}, results);
        byte[] expected = content.clone();
        for (int i = 0; i < 3; i++) {
            Arrays.fill(expected, i * length, (i + 1) * length, (byte) (i + 1));
        }
        assertArrayEquals(expected, Files.readAllBytes(path));
    }

    /** A buffered write of {@code length} bytes of {@code value} at {@code offset}. */
    private Kiocb write(int value, long offset, int length)
    {
        ByteBuffer data = DirectMemory.allocateAligned(length);
        while (data.hasRemaining()) {
            data.put((byte) value);
        }
        data.clear();
        return aio.alloc().initRw(Kiocb.Op.WRITE, file, KvecIter.of(Direction.SOURCE, data), offset, 0);
    }

    private static byte[] bytes(ByteBuffer buffer)
    {
        byte[] out = new byte[buffer.capacity()];
        buffer.duplicate().clear().get(out);
        return out;
    }
}
