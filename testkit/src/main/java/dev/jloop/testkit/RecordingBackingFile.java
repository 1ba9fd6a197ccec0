package dev.jloop.testkit;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static java.util.Objects.requireNonNull;

/**
 * A file that records, in order, the operations that reach it (as they start), so that a test can
 * tell what a device or frontend asked of its backing file: which writes a flush followed, whether
 * FUA went as {@code IOCB_DSYNC} or as an fdatasync, whether zeroing fell back to writing. It also
 * counts how many operations run at once and on which threads, and can declare other capabilities
 * than the file it wraps or refuse fallocate with {@code -EOPNOTSUPP}, as a file system without
 * PUNCH_HOLE or ZERO_RANGE does.
 *
 * <p>The records read {@code read POS+COUNT}, {@code write POS+COUNT} (with {@code " dsync"} for
 * {@link Kiocb#IOCB_DSYNC}), {@code fsync} or {@code fdatasync}, {@code fallocate MODE POS+LENGTH},
 * {@code extents OFFSET+LENGTH}, {@code cache OFFSET+LENGTH} and {@code registerMemory REGIONS}.
 * "At once" counts the part of an operation that runs inside the call, which for a file that
 * completes later is only its submission.
 */
public final class RecordingBackingFile
        extends ForwardingBackingFile
{
    private final Capabilities capabilities;
    private final boolean fallocateUnsupported;
    private final List<String> ops = new CopyOnWriteArrayList<>();
    private final List<String> threads = new CopyOnWriteArrayList<>();
    private final AtomicInteger running = new AtomicInteger();
    private final AtomicInteger maxRunning = new AtomicInteger();
    private volatile boolean closed;

    /** Records what reaches {@code delegate}, declaring its capabilities. */
    public RecordingBackingFile(BackingFile delegate)
    {
        this(delegate, delegate.capabilities(), false);
    }

    /**
     * @param capabilities declared instead of the delegate's
     * @param fallocateUnsupported whether every fallocate fails with {@code -EOPNOTSUPP} (recorded all the same)
     */
    public RecordingBackingFile(BackingFile delegate, Capabilities capabilities, boolean fallocateUnsupported)
    {
        super(delegate);
        this.capabilities = requireNonNull(capabilities, "capabilities is null");
        this.fallocateUnsupported = fallocateUnsupported;
    }

    /** The operations so far, oldest first; live (a test may clear it between steps). */
    public List<String> ops()
    {
        return ops;
    }

    /** The names of the threads that called each operation, in the order of {@link #ops()}. */
    public List<String> threads()
    {
        return threads;
    }

    /** The most operations that were inside a call at the same time. */
    public int maxRunning()
    {
        return maxRunning.get();
    }

    public boolean isClosed()
    {
        return closed;
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        enter("read " + kiocb.pos() + "+" + kiocb.iter().count());
        return exit(super.readIter(kiocb));
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        enter("write " + kiocb.pos() + "+" + kiocb.iter().count() + ((kiocb.flags() & Kiocb.IOCB_DSYNC) != 0 ? " dsync" : ""));
        return exit(super.writeIter(kiocb));
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        enter(kiocb.datasync() ? "fdatasync" : "fsync");
        return exit(super.fsync(kiocb));
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        enter("fallocate " + kiocb.mode() + " " + kiocb.pos() + "+" + kiocb.length());
        return exit(fallocateUnsupported ? -Errno.EOPNOTSUPP : super.fallocate(kiocb));
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        enter("extents " + offset + "+" + length);
        return exit(super.extents(offset, length, sink));
    }

    @Override
    public long cache(long offset, long length)
    {
        enter("cache " + offset + "+" + length);
        return exit(super.cache(offset, length));
    }

    @Override
    public void registerMemory(List<ByteBuffer> regions)
    {
        ops.add("registerMemory " + regions.size());
        super.registerMemory(regions);
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void close()
            throws IOException
    {
        closed = true;
        super.close();
    }

    private void enter(String op)
    {
        ops.add(op);
        threads.add(Thread.currentThread().getName());
        maxRunning.accumulateAndGet(running.incrementAndGet(), Math::max);
        // Gives another caller the chance to overlap, so that maxRunning sees what the caller allows.
        Thread.yield();
    }

    private long exit(long res)
    {
        running.decrementAndGet();
        return res;
    }
}
