package dev.jloop.filter;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * A file that takes only what a strict device takes: requests aligned to 4096 bytes and no longer
 * than 64 KiB; anything else fails with {@code -EINVAL}, and is counted.
 */
final class StrictBackingFile
        extends ForwardingBackingFile
{
    static final int BLOCK = 4096;
    static final int MAX = 64 << 10;

    private final AtomicInteger refused = new AtomicInteger();
    private final AtomicInteger requests = new AtomicInteger();

    StrictBackingFile(BackingFile next)
    {
        super(next);
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        return allowed(kiocb.pos(), kiocb.iter().count()) ? super.readIter(kiocb) : -Errno.EINVAL;
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        return allowed(kiocb.pos(), kiocb.iter().count()) ? super.writeIter(kiocb) : -Errno.EINVAL;
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        return allowed(kiocb.pos(), kiocb.length()) ? super.fallocate(kiocb) : -Errno.EINVAL;
    }

    @Override
    public Capabilities capabilities()
    {
        return super.capabilities().toBuilder().logicalBlockSize(BLOCK).build();
    }

    /** Requests refused for their alignment or length. */
    int refused()
    {
        return refused.get();
    }

    /** Reads, writes and fallocates it was given. */
    int requests()
    {
        return requests.get();
    }

    private boolean allowed(long pos, long length)
    {
        requests.incrementAndGet();
        if (pos % BLOCK != 0 || length % BLOCK != 0 || length > MAX) {
            refused.incrementAndGet();
            return false;
        }
        return true;
    }
}
