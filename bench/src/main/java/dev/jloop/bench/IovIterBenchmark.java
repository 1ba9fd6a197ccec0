package dev.jloop.bench;

import dev.jloop.api.IovIter.Direction;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;

/**
 * {@link BvecIter} copies over pool pages, from and to a direct buffer (a socket's buffer on the NBD
 * path) and a heap array (the in-memory backend's blocks). The pool hands out compound pages, so a
 * 64 KiB request is usually one segment; the per-segment cost shows at 4 KiB.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class IovIterBenchmark
{
    @Param({"4096", "65536"})
    public int size;

    private PagePool pool;
    private Page[] pages;
    private int nrPages;
    private final BvecIter iter = new BvecIter();
    private ByteBuffer direct;
    private byte[] heap;

    @Setup
    public void setUp()
            throws InterruptedException
    {
        pool = new PagePool(PagePool.SLAB_SIZE);
        pages = new Page[PagePool.maxPages(size)];
        nrPages = pool.allocate(size, pages);
        direct = ByteBuffer.allocateDirect(size);
        heap = new byte[size];
    }

    @TearDown
    public void tearDown()
    {
        pool.free(pages, nrPages);
        pool.close();
    }

    @Benchmark
    public int copyToIterDirect()
    {
        iter.reset(Direction.DEST, pages, nrPages, size);
        return iter.copyToIter(direct.clear());
    }

    @Benchmark
    public int copyFromIterDirect()
    {
        iter.reset(Direction.SOURCE, pages, nrPages, size);
        return iter.copyFromIter(direct.clear());
    }

    @Benchmark
    public int copyToIterHeap()
    {
        iter.reset(Direction.DEST, pages, nrPages, size);
        return iter.copyToIter(heap, 0, size);
    }

    @Benchmark
    public int copyFromIterHeap()
    {
        iter.reset(Direction.SOURCE, pages, nrPages, size);
        return iter.copyFromIter(heap, 0, size);
    }
}
