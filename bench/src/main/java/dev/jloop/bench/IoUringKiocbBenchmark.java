package dev.jloop.bench;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.backend.iouring.IoUringBackendFactory;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Kiocbs through {@link AioKernel} on the io_uring backend, as the loop device issues them: alloc,
 * init, submit (an SQE), the completion (reaped by the submitting thread, since page-cache hits
 * complete inside {@code io_uring_enter}), free. One 4 KiB read or write at a time, or 32 reads
 * under one plug (one {@code io_uring_enter}; {@link OperationsPerInvocation}, per read). Pages come
 * from a {@link PagePool} whose slab is registered, so reads are READ_FIXED. Run with
 * {@code -prof gc}: the target is 0 B/op, on every thread (the ring's completion thread included).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class IoUringKiocbBenchmark
{
    private static final int BLOCK = 4096;
    private static final int FILE_SIZE = 64 << 20;
    private static final int BATCH = 32;

    private Path path;
    private AioKernel aio;
    private BackingFile file;
    private PagePool pool;
    private final Page[] pages = new Page[BATCH];
    private final Page[][] single = new Page[BATCH][];
    private final BvecIter[] iters = new BvecIter[BATCH];
    private long[] offsets;
    private int next;
    private int completed;
    private long failed;
    private final KiocbCompletion completion = this::completed;

    @Setup
    public void setUp()
            throws IOException, InterruptedException
    {
        path = BenchFiles.createCached("jloop-kiocb-bench", FILE_SIZE);
        aio = new AioKernel();
        file = new IoUringBackendFactory().open(new BackendConfig(path, false, false, 64, Map.of()));
        pool = new PagePool(PagePool.SLAB_SIZE);
        pool.reserve(PagePool.SLAB_SIZE);
        file.registerMemory(pool.slabs());
        for (int i = 0; i < BATCH; i++) {
            Page[] one = new Page[1];
            if (pool.allocate(BLOCK, one) != 1) {
                throw new IllegalStateException("expected one page for " + BLOCK + " bytes");
            }
            pages[i] = one[0];
            single[i] = one;
            iters[i] = new BvecIter();
        }
        offsets = BenchFiles.randomOffsets(1 << 14, FILE_SIZE, BLOCK);
    }

    @TearDown
    public void tearDown()
            throws IOException
    {
        file.close();
        pool.free(pages, BATCH);
        pool.close();
        Files.deleteIfExists(path);
        if (aio.allocated() != 0 || aio.inFlight() != 0 || failed != 0) {
            throw new IllegalStateException("kiocbs leaked or failed: allocated " + aio.allocated() + ", in flight " + aio.inFlight()
                    + ", failures " + failed);
        }
    }

    @Benchmark
    public int read4k()
    {
        completed = 0;
        submit(Kiocb.Op.READ, Direction.DEST, 0);
        awaitCompleted(1);
        return completed;
    }

    @Benchmark
    public int write4k()
    {
        completed = 0;
        submit(Kiocb.Op.WRITE, Direction.SOURCE, 0);
        awaitCompleted(1);
        return completed;
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int read4kPlugged32()
    {
        completed = 0;
        aio.plug(file);
        for (int i = 0; i < BATCH; i++) {
            submit(Kiocb.Op.READ, Direction.DEST, i);
        }
        aio.unplug(file);
        awaitCompleted(BATCH);
        return completed;
    }

    private void submit(Kiocb.Op op, Direction direction, int page)
    {
        Kiocb kiocb = aio.alloc();
        BvecIter iter = iters[page];
        pages[page].buffer().clear();
        iter.reset(direction, single[page], 1, BLOCK);
        long pos = offsets[next++ & (offsets.length - 1)];
        kiocb.initRw(op, file, iter, pos, 0).initCallback(completion, null);
        aio.submit(kiocb);
    }

    /** Completions normally ran inside submit/unplug; one that missed the page cache comes from the ring's thread. */
    private void awaitCompleted(int n)
    {
        while (readCompleted() < n) {
            Thread.onSpinWait();
        }
    }

    private synchronized int readCompleted()
    {
        return completed;
    }

    private synchronized void completed(Kiocb kiocb, long res)
    {
        if (res != BLOCK) {
            failed++;
        }
        completed++;
        aio.free(kiocb);
    }
}
