package dev.jloop.bench;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Bio;
import dev.jloop.api.BioEndIo;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import dev.jloop.loop.LoopDevice;
import dev.jloop.loop.stats.DeviceStats;
import dev.jloop.testkit.MemoryBackingFile;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.util.concurrent.TimeUnit;

/**
 * What counting costs a request: a 4 KiB read and a flush through {@link LoopDevice} over the
 * in-memory {@link MemoryBackingFile} (which completes at once, so only jloop's own work is
 * measured), with the device's counters and latency histograms ({@code stats=on}) and without
 * ({@code stats=off}); on one thread, and on two threads that share the device and its counters.
 * Run with {@code -prof gc}: counting must add no allocation ({@code gc.alloc.rate.norm}).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class LoopDeviceStatsBenchmark
{
    private static final int BLOCK = 4096;
    private static final long FILE_SIZE = 16 << 20;

    @State(Scope.Benchmark)
    public static class Device
    {
        @Param({"on", "off"})
        public String stats;

        LoopDevice device;
        MemoryBackingFile file;

        @Setup(Level.Trial)
        public void setUp()
        {
            file = new MemoryBackingFile(FILE_SIZE);
            byte[] data = new byte[1 << 20];
            for (long offset = 0; offset < FILE_SIZE; offset += data.length) {
                file.write(offset, data);
            }
            device = new LoopDevice(file, new AioKernel(), "bench", stats.equals("on") ? new DeviceStats() : null);
        }

        @TearDown(Level.Trial)
        public void tearDown()
                throws IOException
        {
            device.close();
        }
    }

    @State(Scope.Thread)
    public static class Client
            implements BioEndIo
    {
        final Page[] pages = new Page[1];
        final BvecIter iter = new BvecIter();
        final Bio bio = new Bio();
        PagePool pool;
        long pos;
        int error = 1;

        @Setup(Level.Trial)
        public void setUp()
                throws InterruptedException
        {
            pool = new PagePool(PagePool.SLAB_SIZE);
            if (pool.allocate(BLOCK, pages) != 1) {
                throw new IllegalStateException("expected one page for " + BLOCK + " bytes");
            }
        }

        @TearDown(Level.Trial)
        public void tearDown()
        {
            pool.free(pages, 1);
            pool.close();
        }

        @Override
        public void endIo(Bio bio, int error)
        {
            this.error = error;
        }

        int run(LoopDevice device, Bio.Op op)
        {
            error = 1;
            if (op == Bio.Op.READ) {
                iter.reset(Direction.DEST, pages, 1, BLOCK);
                bio.init(op, pos, BLOCK, 0, iter);
                pos = (pos + BLOCK) & (FILE_SIZE - 1);
            }
            else {
                bio.init(op, 0, 0, 0, null);
            }
            device.submit(bio.setEndIo(this, null));
            if (error != 0) {
                throw new IllegalStateException(op + " ended with " + error + " (1: not at once)");
            }
            return error;
        }
    }

    @Benchmark
    public int read4k(Device device, Client client)
    {
        return client.run(device.device, Bio.Op.READ);
    }

    @Benchmark
    public int flush(Device device, Client client)
    {
        return client.run(device.device, Bio.Op.FLUSH);
    }

    @Benchmark
    @Threads(2)
    public int read4kTwoThreads(Device device, Client client)
    {
        return client.run(device.device, Bio.Op.READ);
    }
}
