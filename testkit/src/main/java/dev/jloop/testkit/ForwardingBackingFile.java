package dev.jloop.testkit;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} that passes every call to another one: extend it and override what a test
 * double changes (a fault, a count, a held completion), as Guava's forwarding collections.
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
    public long readIter(Kiocb kiocb, IovIter iter, long pos)
    {
        return delegate.readIter(kiocb, iter, pos);
    }

    @Override
    public long writeIter(Kiocb kiocb, IovIter iter, long pos)
    {
        return delegate.writeIter(kiocb, iter, pos);
    }

    @Override
    public long fsync(Kiocb kiocb, boolean datasync)
    {
        return delegate.fsync(kiocb, datasync);
    }

    @Override
    public long fallocate(Kiocb kiocb, int mode, long offset, long length)
    {
        return delegate.fallocate(kiocb, mode, offset, length);
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
