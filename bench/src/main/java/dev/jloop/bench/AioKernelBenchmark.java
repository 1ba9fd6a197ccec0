package dev.jloop.bench;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import dev.jloop.testkit.MemoryBackingFile;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * One request through {@link AioKernel} as the loop device issues it: alloc, init, submit, the
 * completion callback, free; against the synchronous {@link MemoryBackingFile}, so that only
 * jloop's own bookkeeping and the 4 KiB copy are measured. Run with {@code -prof gc}: the design
 * asks for no per-request heap allocation, i.e. {@code gc.alloc.rate.norm} of 0 B/op.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class AioKernelBenchmark
{
    private static final int BLOCK = 4096;
    private static final long FILE_SIZE = 16 << 20;

    private AioKernel aio;
    private MemoryBackingFile file;
    private PagePool pool;
    private final Page[] pages = new Page[1];
    private final BvecIter iter = new BvecIter();
    private long pos;
    private long lastResult;
    private final KiocbCompletion completion = this::completed;

    @Setup
    public void setUp()
            throws InterruptedException
    {
        aio = new AioKernel();
        file = new MemoryBackingFile(FILE_SIZE);
        // Written blocks, so that reads copy data instead of zero-filling holes.
        byte[] data = new byte[1 << 20];
        for (long offset = 0; offset < FILE_SIZE; offset += data.length) {
            file.write(offset, data);
        }
        pool = new PagePool(PagePool.SLAB_SIZE);
        if (pool.allocate(BLOCK, pages) != 1) {
            throw new IllegalStateException("expected one page for " + BLOCK + " bytes");
        }
    }

    @TearDown
    public void tearDown()
    {
        pool.free(pages, 1);
        pool.close();
        file.close();
        if (aio.allocated() != 0 || aio.inFlight() != 0) {
            throw new IllegalStateException("kiocbs leaked: allocated " + aio.allocated() + ", in flight " + aio.inFlight());
        }
    }

    @Benchmark
    public long read4k()
    {
        return roundTrip(Kiocb.Op.READ, Direction.DEST);
    }

    @Benchmark
    public long write4k()
    {
        return roundTrip(Kiocb.Op.WRITE, Direction.SOURCE);
    }

    private long roundTrip(Kiocb.Op op, Direction direction)
    {
        Kiocb kiocb = aio.alloc();
        iter.reset(direction, pages, 1, BLOCK);
        kiocb.initRw(op, file, iter, pos, 0).initCallback(completion, null);
        aio.submit(kiocb);
        aio.free(kiocb);
        pos = (pos + BLOCK) & (FILE_SIZE - 1);
        if (lastResult != BLOCK) {
            throw new IllegalStateException(op + " returned " + lastResult);
        }
        return lastResult;
    }

    private void completed(Kiocb kiocb, long res)
    {
        lastResult = res;
    }
}
