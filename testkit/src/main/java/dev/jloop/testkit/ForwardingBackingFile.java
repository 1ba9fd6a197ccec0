package dev.jloop.testkit;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} that passes every call to another one: extend it and override what a test
 * double changes (a fault, a count, a held completion), as Guava's forwarding collections. The
 * kiocb goes on as it came, so its {@link Kiocb#file()} is this file, not the delegate.
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
