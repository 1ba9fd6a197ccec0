package dev.jloop.backend.sync;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.posix.BounceIo;
import dev.jloop.posix.Extents;
import dev.jloop.posix.FileDescriptor;
import dev.jloop.posix.Posix;

import java.io.IOException;
import java.nio.ByteBuffer;

import static java.util.Objects.requireNonNull;

/**
 * A backing file driven with {@code pread}/{@code pwrite} in the calling thread: every operation
 * runs to completion and returns its result, never {@link Kiocb#QUEUED}. The loop device runs it on
 * one worker thread, one request at a time, as the loop driver did before asynchronous I/O.
 *
 * <p>Operations are serialised here as well (they share one bounce buffer), so a caller that
 * ignores {@link ThreadModel#SERIALIZE_ALL_REQUESTS} gets slowness, not corruption. After
 * {@link #close()} every operation fails with {@code -EBADF} instead of touching a descriptor number
 * the kernel may have reused.
 */
public final class SyncBackingFile
        implements BackingFile
{
    private static final int BOUNCE_SIZE = 256 * 1024;

    private final FileDescriptor fd;
    private final int fdNumber;
    private final boolean readOnly;
    private final Capabilities capabilities;
    private final PosixIo io;
    private boolean closed;

    private SyncBackingFile(FileDescriptor fd, boolean readOnly, boolean direct)
    {
        this.fd = requireNonNull(fd, "fd is null");
        this.fdNumber = fd.intValue();
        this.readOnly = readOnly;
        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                .nativeFua(false)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .cache(!direct)
                .threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS)
                .logicalBlockSize(direct ? BounceIo.DIRECT_BLOCK_SIZE : 1)
                .build();
        this.io = new PosixIo(fdNumber, direct);
    }

    /** Opens {@code config.path()}; see {@link FileDescriptor#openBackingFile} for the failures. */
    public static SyncBackingFile open(BackendConfig config)
            throws IOException
    {
        FileDescriptor fd = FileDescriptor.openBackingFile(config.path(), config.readOnly(), config.direct());
        return new SyncBackingFile(fd, config.readOnly(), config.direct());
    }

    @Override
    public synchronized long readIter(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return io.readIter(kiocb.iter(), kiocb.pos());
    }

    @Override
    public synchronized long writeIter(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (readOnly) {
            return -Errno.EPERM;
        }
        long res = io.writeIter(kiocb.iter(), kiocb.pos());
        if (res > 0 && (kiocb.flags() & Kiocb.IOCB_DSYNC) != 0) {
            int sync = Posix.fdatasync(fdNumber);
            if (sync < 0) {
                return sync;
            }
        }
        return res;
    }

    @Override
    public synchronized long fsync(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return kiocb.datasync() ? Posix.fdatasync(fdNumber) : Posix.fsync(fdNumber);
    }

    @Override
    public synchronized long fallocate(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (readOnly) {
            return -Errno.EPERM;
        }
        return Posix.fallocate(fdNumber, kiocb.mode(), kiocb.pos(), kiocb.length());
    }

    @Override
    public synchronized long extents(long offset, long length, ExtentSink sink)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Extents.report(fdNumber, offset, length, sink);
    }

    /** Read-ahead through {@code posix_fadvise(WILLNEED)}; not serialised, it only starts reads. */
    @Override
    public long cache(long offset, long length)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Posix.fadvise(fdNumber, offset, length, Posix.POSIX_FADV_WILLNEED);
    }

    @Override
    public synchronized long size()
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Posix.size(fdNumber);
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public synchronized void close()
            throws IOException
    {
        closed = true;
        fd.close();
    }

    @Override
    public String toString()
    {
        return "SyncBackingFile{" + fd.path() + ", " + capabilities + "}";
    }

    private static final class PosixIo
            extends BounceIo
    {
        private final int fd;

        PosixIo(int fd, boolean direct)
        {
            super(direct, BOUNCE_SIZE);
            this.fd = fd;
        }

        @Override
        protected long read(ByteBuffer buffer, long address, long pos)
        {
            return Posix.pread(fd, address, buffer.remaining(), pos);
        }

        @Override
        protected long write(ByteBuffer buffer, long address, long pos)
        {
            long length = buffer.remaining();
            long done = 0;
            while (done < length) {
                long n = Posix.pwrite(fd, address + done, length - done, pos + done);
                if (n <= 0) {
                    return done > 0 ? done : (n < 0 ? n : -Errno.EIO);
                }
                done += n;
            }
            return done;
        }

        @Override
        protected long truncate(long size)
        {
            return Posix.ftruncate(fd, size);
        }
    }
}
