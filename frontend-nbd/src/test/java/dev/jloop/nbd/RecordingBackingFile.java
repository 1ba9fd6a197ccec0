package dev.jloop.nbd;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;

import java.io.IOException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Wraps a backing file and records, in order, the operations that reach it (as they start), so a
 * test can tell which writes a flush followed; can refuse fallocate with EOPNOTSUPP, as a file system
 * without ZERO_RANGE or PUNCH_HOLE does.
 */
final class RecordingBackingFile
        implements BackingFile
{
    private final BackingFile delegate;
    private final Capabilities capabilities;
    private final boolean fallocateUnsupported;
    final List<String> ops = new CopyOnWriteArrayList<>();

    RecordingBackingFile(BackingFile delegate, Capabilities capabilities, boolean fallocateUnsupported)
    {
        this.delegate = delegate;
        this.capabilities = capabilities;
        this.fallocateUnsupported = fallocateUnsupported;
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        ops.add("read " + kiocb.pos() + "+" + kiocb.iter().count());
        return delegate.readIter(kiocb);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        ops.add("write " + kiocb.pos() + "+" + kiocb.iter().count());
        return delegate.writeIter(kiocb);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        ops.add("fsync");
        return delegate.fsync(kiocb);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        ops.add("fallocate " + kiocb.mode() + " " + kiocb.pos() + "+" + kiocb.length());
        if (fallocateUnsupported) {
            return -Errno.EOPNOTSUPP;
        }
        return delegate.fallocate(kiocb);
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        ops.add("extents " + offset + "+" + length);
        return delegate.extents(offset, length, sink);
    }

    @Override
    public long cache(long offset, long length)
    {
        ops.add("cache " + offset + "+" + length);
        return 0;
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
        delegate.close();
    }
}
