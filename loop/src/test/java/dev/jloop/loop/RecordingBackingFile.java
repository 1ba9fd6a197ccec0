package dev.jloop.loop;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;

import java.io.IOException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Wraps a backing file, records the operations the device asks for (in order), measures how many
 * run at once, and can refuse fallocate with EOPNOTSUPP.
 */
final class RecordingBackingFile
        implements BackingFile
{
    private final BackingFile delegate;
    private final Capabilities capabilities;
    private final boolean fallocateUnsupported;
    final List<String> ops = new CopyOnWriteArrayList<>();
    final AtomicInteger running = new AtomicInteger();
    final AtomicInteger maxRunning = new AtomicInteger();
    final List<String> threads = new CopyOnWriteArrayList<>();
    volatile boolean closed;

    RecordingBackingFile(BackingFile delegate, Capabilities capabilities, boolean fallocateUnsupported)
    {
        this.delegate = delegate;
        this.capabilities = capabilities;
        this.fallocateUnsupported = fallocateUnsupported;
    }

    private void enter(String op)
    {
        ops.add(op);
        threads.add(Thread.currentThread().getName());
        maxRunning.accumulateAndGet(running.incrementAndGet(), Math::max);
        Thread.yield();
    }

    private long exit(long res)
    {
        running.decrementAndGet();
        return res;
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        enter("read " + kiocb.pos() + "+" + kiocb.iter().count());
        return exit(delegate.readIter(kiocb));
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        enter("write " + kiocb.pos() + "+" + kiocb.iter().count() + ((kiocb.flags() & Kiocb.IOCB_DSYNC) != 0 ? " dsync" : ""));
        return exit(delegate.writeIter(kiocb));
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        enter(kiocb.datasync() ? "fdatasync" : "fsync");
        return exit(delegate.fsync(kiocb));
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        enter("fallocate " + kiocb.mode() + " " + kiocb.pos() + "+" + kiocb.length());
        if (fallocateUnsupported) {
            return exit(-Errno.EOPNOTSUPP);
        }
        return exit(delegate.fallocate(kiocb));
    }

    @Override
    public void registerMemory(List<java.nio.ByteBuffer> regions)
    {
        ops.add("registerMemory " + regions.size());
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        return delegate.extents(offset, length, sink);
    }

    @Override
    public long cache(long offset, long length)
    {
        enter("cache " + offset + "+" + length);
        return exit(delegate.cache(offset, length));
    }

    @Override
    public long size()
    {
        return delegate.size();
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
        delegate.close();
    }
}
