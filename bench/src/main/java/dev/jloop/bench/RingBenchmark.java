package dev.jloop.bench;

import dev.jloop.iter.DirectMemory;
import dev.jloop.posix.FileDescriptor;
import dev.jloop.posix.NativeIoException;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;
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
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The submit/complete path of {@link Ring}: prepare {@code batch} SQEs, one {@code io_uring_enter}
 * that submits them and waits for all, reap the CQEs. Times are per operation
 * ({@link OperationsPerInvocation}), so batch 1 against batch 32 shows what one system call per
 * request costs. Reads hit the page cache: this is the ring's overhead, not the disk's.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class RingBenchmark
{
    private static final int BLOCK = 4096;
    private static final int MAX_BATCH = 32;
    private static final int FILE_SIZE = 64 << 20;
    private static final int OFFSETS = 4096;

    private Ring ring;
    private Path path;
    private FileDescriptor file;
    private ByteBuffer buffers;
    private long bufferAddress;
    private long[] offsets;
    private int nextOffset;
    private int reaped;
    private int failures;
    private final CompletionHandler handler = this::completed;

    @Setup
    public void setUp()
            throws IOException
    {
        if (!IoUring.isAvailable()) {
            throw new IllegalStateException("io_uring unavailable: " + IoUring.unavailabilityCause());
        }
        ring = Ring.builder(2 * MAX_BATCH).open();
        path = BenchFiles.createCached("jloop-ring-bench", FILE_SIZE);
        file = FileDescriptor.openBackingFile(path, true, false);
        buffers = DirectMemory.allocateAligned(MAX_BATCH * BLOCK);
        bufferAddress = DirectMemory.address(buffers);
        offsets = BenchFiles.randomOffsets(OFFSETS, FILE_SIZE, BLOCK);
    }

    @TearDown
    public void tearDown()
            throws IOException
    {
        ring.close();
        file.close();
        Files.deleteIfExists(path);
        if (failures > 0) {
            throw new IllegalStateException(failures + " operations failed");
        }
    }

    @Benchmark
    public int nopBatch1()
            throws NativeIoException
    {
        return nops(1);
    }

    @Benchmark
    @OperationsPerInvocation(MAX_BATCH)
    public int nopBatch32()
            throws NativeIoException
    {
        return nops(MAX_BATCH);
    }

    @Benchmark
    public int read4kBatch1()
            throws NativeIoException
    {
        return reads(1);
    }

    @Benchmark
    @OperationsPerInvocation(MAX_BATCH)
    public int read4kBatch32()
            throws NativeIoException
    {
        return reads(MAX_BATCH);
    }

    private int nops(int batch)
            throws NativeIoException
    {
        for (int i = 0; i < batch; i++) {
            ring.prepNop(i);
        }
        return submitAndReap(batch);
    }

    private int reads(int batch)
            throws NativeIoException
    {
        int fd = file.intValue();
        for (int i = 0; i < batch; i++) {
            long offset = offsets[nextOffset++ & (OFFSETS - 1)];
            ring.prepRead(fd, 0, bufferAddress + (long) i * BLOCK, BLOCK, offset, 0, i);
        }
        return submitAndReap(batch);
    }

    private int submitAndReap(int batch)
            throws NativeIoException
    {
        int submitted = ring.submitAndWait(batch);
        if (submitted != batch) {
            throw new IllegalStateException("io_uring_enter consumed " + submitted + " of " + batch + " SQEs");
        }
        reaped = 0;
        while (true) {
            ring.reap(handler);
            if (reaped >= batch) {
                return reaped;
            }
            ring.waitCompletions(batch - reaped);
        }
    }

    private void completed(long userData, int res, int flags)
    {
        reaped++;
        if (res < 0) {
            failures++;
        }
    }
}
