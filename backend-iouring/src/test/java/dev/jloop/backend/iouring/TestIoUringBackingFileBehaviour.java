package dev.jloop.backend.iouring;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.IovecIter;
import dev.jloop.iter.KvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.TargetTempDirFactory;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLongArray;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the conformance suite cannot see: cancellation on close, plug batching, fixed buffers, long vectors. */
class TestIoUringBackingFileBehaviour
{
    private static final int SIZE = 4 << 20;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private Path path;
    private byte[] content;
    private AioKernel aio;
    private PagePool pool;

    @BeforeEach
    void setUp()
            throws Exception
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), "io_uring unavailable: " + IoUring.unavailabilityCause());
        path = dir.resolve("disk");
        content = new byte[SIZE];
        new Random(42).nextBytes(content);
        Files.write(path, content);
        aio = new AioKernel();
        pool = new PagePool(16 << 20);
    }

    @AfterEach
    void tearDown()
            throws Exception
    {
        if (aio != null) {
            assertEquals(0, aio.inFlight(), "kiocbs in flight");
            assertEquals(0, aio.allocated(), "kiocbs not freed");
            assertEquals(0, pool.usedBytes(), "pages not returned");
            pool.close();
        }
    }

    private IoUringBackingFile open(boolean direct, int queueDepth)
            throws Exception
    {
        return (IoUringBackingFile) new IoUringBackendFactory().open(
                new BackendConfig(path, false, direct, queueDepth, Map.of()));
    }

    /** One pooled read request: pages, iterator, and what its completion saw. */
    private final class Reads
    {
        final int n;
        final int length;
        final Page[][] pages;
        final int[] nrPages;
        final AtomicIntegerArray completions;
        final AtomicLongArray results;
        final CountDownLatch done;

        Reads(int n, int length)
                throws InterruptedException
        {
            this.n = n;
            this.length = length;
            pages = new Page[n][PagePool.maxPages(length)];
            nrPages = new int[n];
            completions = new AtomicIntegerArray(n);
            results = new AtomicLongArray(n);
            done = new CountDownLatch(n);
            for (int i = 0; i < n; i++) {
                nrPages[i] = pool.allocate(length, pages[i]);
            }
        }

        void submit(IoUringBackingFile file, int i, long pos)
        {
            Kiocb kiocb = aio.alloc();
            BvecIter iter = new BvecIter().reset(Direction.DEST, pages[i], nrPages[i], length);
            kiocb.initRw(Kiocb.Op.READ, file, iter, pos, 0);
            kiocb.initCallback((k, res) -> {
                completions.incrementAndGet(i);
                results.set(i, res);
                if (res == length && !matches(i, pos)) {
                    results.set(i, Long.MIN_VALUE); // data mismatch, seen by the test thread
                }
                pool.free(pages[i], nrPages[i]);
                aio.free(k);
                done.countDown();
            }, null);
            aio.submit(kiocb);
        }

        private boolean matches(int i, long pos)
        {
            for (int p = 0, off = 0; p < nrPages[i]; off += pages[i][p].size(), p++) {
                ByteBuffer page = pages[i][p].buffer();
                int len = Math.min(page.capacity(), length - off);
                if (!ByteBuffer.wrap(content, (int) pos + off, len).equals(page.duplicate().clear().limit(len))) {
                    return false;
                }
            }
            return true;
        }
    }

    @Test
    void closeCancelsEveryPluggedRequestExactlyOnce()
            throws Exception
    {
        IoUringBackingFile file = open(false, 32);
        Reads reads = new Reads(32, 64 * 1024);
        file.plug();
        for (int i = 0; i < reads.n; i++) {
            reads.submit(file, i, (long) i * 64 * 1024);
        }
        assertEquals(32, aio.inFlight(), "held back by the plug");
        file.close();
        assertTrue(reads.done.await(10, TimeUnit.SECONDS));
        for (int i = 0; i < reads.n; i++) {
            assertEquals(1, reads.completions.get(i), "completions of request " + i);
            assertEquals(-Errno.ECANCELED, reads.results.get(i), "request " + i);
        }
        file.unplug();
    }

    @Test
    void closeWithRequestsInFlightCompletesEachOnce()
            throws Exception
    {
        for (int round = 0; round < 20; round++) {
            IoUringBackingFile file = open(round % 2 == 1, 16);
            Reads reads = new Reads(16, 128 * 1024);
            for (int i = 0; i < reads.n; i++) {
                reads.submit(file, i, (long) i * 128 * 1024);
            }
            file.close();
            assertTrue(reads.done.await(10, TimeUnit.SECONDS));
            for (int i = 0; i < reads.n; i++) {
                assertEquals(1, reads.completions.get(i), "completions of request " + i);
                long res = reads.results.get(i);
                assertTrue(res == 128 * 1024 || res == -Errno.ECANCELED, "request " + i + ": " + res);
            }
        }
    }

    /** The libc calls that break a ring under its owner's feet. */
    public interface BreakingLibC
    {
        int open(String path, int flags);

        int dup2(int oldFd, int newFd);

        int close(int fd);
    }

    /**
     * When {@code io_uring_enter} fails for good (here: the ring's descriptor now names /dev/null, so
     * it fails with EOPNOTSUPP), what the kernel has not taken completes with the error instead of
     * waiting forever, and later requests fail at once.
     */
    @Test
    void aRingThatCannotSubmitFailsItsRequestsInsteadOfLosingThem()
            throws Exception
    {
        IoUringBackingFile file = open(false, 8);
        BreakingLibC libc = jnr.ffi.LibraryLoader.create(BreakingLibC.class).load("c");
        int devNull = libc.open("/dev/null", 0);
        assertTrue(devNull >= 0);
        try {
            assertTrue(libc.dup2(devNull, file.ringFd()) >= 0);
            Reads reads = new Reads(4, 4096);
            file.plug();
            for (int i = 0; i < reads.n; i++) {
                reads.submit(file, i, (long) i * 4096);
            }
            file.unplug();
            assertTrue(reads.done.await(10, TimeUnit.SECONDS), reads.done.getCount() + " requests never completed");
            for (int i = 0; i < reads.n; i++) {
                assertEquals(1, reads.completions.get(i), "completions of request " + i);
                assertEquals(-Errno.EOPNOTSUPP, reads.results.get(i), "request " + i);
            }
            Reads later = new Reads(1, 4096);
            later.submit(file, 0, 0);
            assertTrue(later.done.await(10, TimeUnit.SECONDS));
            assertEquals(-Errno.EOPNOTSUPP, later.results.get(0));
        }
        finally {
            file.close();
            libc.close(devNull);
        }
    }

    @Test
    void pluggedSubmissionsTakeOneEnter()
            throws Exception
    {
        try (IoUringBackingFile file = open(false, 64)) {
            Reads reads = new Reads(24, 16 * 1024);
            long before = file.submitCalls();
            file.plug();
            file.plug();
            for (int i = 0; i < reads.n; i++) {
                reads.submit(file, i, (long) i * 16 * 1024);
            }
            file.unplug();
            assertEquals(before, file.submitCalls(), "nothing submitted while the outer plug holds");
            file.unplug();
            assertEquals(before + 1, file.submitCalls(), "one io_uring_enter for the batch");
            assertTrue(reads.done.await(10, TimeUnit.SECONDS));
            for (int i = 0; i < reads.n; i++) {
                assertEquals(16 * 1024, reads.results.get(i));
            }
        }
    }

    @Test
    void registeredPoolSlabsUseFixedBuffers()
            throws Exception
    {
        try (IoUringBackingFile file = open(true, 8)) {
            Reads reads = new Reads(4, 8192);
            file.registerMemory(pool.slabs());
            for (int i = 0; i < reads.n; i++) {
                reads.submit(file, i, 4096L * (1 + 7 * i));
            }
            assertTrue(reads.done.await(10, TimeUnit.SECONDS));
            for (int i = 0; i < reads.n; i++) {
                assertEquals(8192, reads.results.get(i));
            }
            assertEquals(4, file.fixedSubmissions(), "single-page requests in registered slabs go as READ_FIXED");
        }
    }

    /**
     * A vector longer than a slot's iovecs is one SQE for its first {@value IoUringBackingFile#IOV_PER_SLOT}
     * segments: a short transfer, whose rest the submitter resubmits at {@code pos + res}.
     */
    @Test
    void vectorsLongerThanASlotAreShortTransfers()
            throws Exception
    {
        try (IoUringBackingFile file = open(true, 4)) {
            int segments = IoUringBackingFile.IOV_PER_SLOT * 2 + 3;
            ByteBuffer[] buffers = new ByteBuffer[segments];
            for (int i = 0; i < segments; i++) {
                buffers[i] = ByteBuffer.allocateDirect(2 * 4096).alignedSlice(4096).limit(4096).slice();
                buffers[i].put(0, (byte) (i + 1)).put(4095, (byte) ~i);
            }
            long pos = 1 << 20;
            long total = (long) segments * 4096;
            long perSqe = (long) IoUringBackingFile.IOV_PER_SLOT * 4096;
            IovIter iter = KvecIter.of(Direction.SOURCE, buffers);
            assertEquals(perSqe, run(file, Kiocb.Op.WRITE, iter, pos), "one SQE's segments");
            assertEquals(total - perSqe, iter.count(), "the rest stays in the iterator");
            long done = perSqe;
            while (iter.count() > 0) {
                long res = run(file, Kiocb.Op.WRITE, iter, pos + done);
                assertTrue(res > 0, "write of the rest: " + Errno.name(res));
                done += res;
            }
            assertEquals(total, done);
            byte[] back = new byte[segments * 4096];
            assertEquals(back.length, run(file, Kiocb.Op.READ, IovecIter.of(Direction.DEST, back), pos));
            for (int i = 0; i < segments; i++) {
                assertEquals((byte) (i + 1), back[i * 4096]);
                assertEquals((byte) ~i, back[i * 4096 + 4095]);
            }
        }
    }

    @Test
    void concurrentUnalignedDirectWritesToOneBlockAllSurvive()
            throws Exception
    {
        try (IoUringBackingFile file = open(true, 16)) {
            int writers = 8;
            Thread[] threads = new Thread[writers];
            Throwable[] failures = new Throwable[writers];
            long block = 3 * 4096;
            for (int t = 0; t < writers; t++) {
                int id = t;
                threads[t] = new Thread(() -> {
                    try {
                        for (int round = 0; round < 50; round++) {
                            // writer t owns bytes [t * 512 + 100, t * 512 + 400) of the block; an aligned
                            // rewrite of the neighbour block races with the read-modify-writes
                            byte[] bytes = new byte[300];
                            java.util.Arrays.fill(bytes, (byte) (id * 16 + round % 16));
                            assertEquals(300, run(file, Kiocb.Op.WRITE, IovecIter.of(Direction.SOURCE, bytes), block + id * 512 + 100));
                        }
                    }
                    catch (Throwable e) {
                        failures[id] = e;
                    }
                });
                threads[t].start();
            }
            for (Thread thread : threads) {
                thread.join();
            }
            for (Throwable failure : failures) {
                if (failure != null) {
                    throw new AssertionError(failure);
                }
            }
            byte[] back = new byte[4096];
            assertEquals(4096, run(file, Kiocb.Op.READ, IovecIter.of(Direction.DEST, back), block));
            for (int t = 0; t < writers; t++) {
                byte[] expected = new byte[300];
                java.util.Arrays.fill(expected, (byte) (t * 16 + 49 % 16));
                assertArrayEquals(expected, java.util.Arrays.copyOfRange(back, t * 512 + 100, t * 512 + 400), "writer " + t);
                assertEquals(content[(int) block + t * 512 + 99], back[t * 512 + 99], "bytes between writers untouched");
            }
        }
    }

    private long run(IoUringBackingFile file, Kiocb.Op op, IovIter iter, long pos)
            throws InterruptedException
    {
        long[] result = new long[1];
        CountDownLatch done = new CountDownLatch(1);
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(op, file, iter, pos, 0).initCallback((k, res) -> {
            result[0] = res;
            done.countDown();
        }, null);
        aio.submit(kiocb);
        assertTrue(done.await(10, TimeUnit.SECONDS));
        aio.free(kiocb);
        return result[0];
    }
}
