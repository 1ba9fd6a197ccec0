package dev.jloop.api;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} that passes every call to another one: the base of a filter
 * ({@link FilterFactory}) or a test double, which overrides only what it changes, as Guava's
 * forwarding collections. The kiocb goes on as it came, so its {@link Kiocb#file()} is this file,
 * not the delegate, and the caller's callback sees the result. A filter that must see the result
 * itself (to time it, retry it, change it) hands the operation down with {@link #passDown}.
 */
public abstract class ForwardingBackingFile
        implements BackingFile
{
    private final BackingFile delegate;

    protected ForwardingBackingFile(BackingFile delegate)
    {
        this.delegate = requireNonNull(delegate, "delegate is null");
    }

    /** The file calls go to. */
    protected BackingFile delegate()
    {
        return delegate;
    }

    /**
     * Runs {@code kiocb}'s operation on the delegate through a kiocb of its own
     * ({@link Kiocb#child}), and tells {@code then} the result instead of completing {@code kiocb}:
     * {@code then} completes it, at once or later, exactly once (the completion rule holds there:
     * it may not wait). Returns {@link Kiocb#QUEUED}, which the caller of the operation gets back.
     * A delegate that throws completes the child with {@code -EIO}.
     */
    protected final long passDown(Kiocb kiocb, KiocbCompletion then)
    {
        kiocb.child(delegate, then).submitToFile();
        return Kiocb.QUEUED;
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        return delegate.readIter(kiocb);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        return delegate.writeIter(kiocb);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        return delegate.fsync(kiocb);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        return delegate.fallocate(kiocb);
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        return delegate.extents(offset, length, sink);
    }

    @Override
    public long cache(long offset, long length)
    {
        return delegate.cache(offset, length);
    }

    @Override
    public long size()
    {
        return delegate.size();
    }

    @Override
    public Capabilities capabilities()
    {
        return delegate.capabilities();
    }

    @Override
    public void registerMemory(List<ByteBuffer> regions)
    {
        delegate.registerMemory(regions);
    }

    @Override
    public void plug()
    {
        delegate.plug();
    }

    @Override
    public void unplug()
    {
        delegate.unplug();
    }

    @Override
    public void close()
            throws IOException
    {
        delegate.close();
    }
}
