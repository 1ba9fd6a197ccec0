package dev.jloop.examples.xor;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

import static java.util.Objects.requireNonNull;

/**
 * A file whose bytes are stored XORed with a {@link XorKey}. Every operation runs to completion in
 * the calling thread with plain {@link FileChannel} positional I/O, so the file declares
 * {@link ThreadModel#SERIALIZE_ALL_REQUESTS}: jloop's loop device then runs its requests one at a
 * time on a worker thread of its own, never on a frontend's thread.
 *
 * <p>It declares no trim, zeroing or extents: a hole of the file would read as the key, not as zeros,
 * so jloop zeroes by writing zeros (which are stored as the key), and every range is data.
 */
final class XorBackingFile
        implements BackingFile
{
    private static final int CHUNK = 64 * 1024;

    private final FileChannel channel;
    private final XorKey key;
    private final Capabilities capabilities;

    private XorBackingFile(FileChannel channel, boolean readOnly, XorKey key)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.key = requireNonNull(key, "key is null");
        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                .multiConn(true)
                .threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS)
                .build();
    }

    static XorBackingFile open(Path path, boolean readOnly, XorKey key)
            throws IOException
    {
        if (Files.isDirectory(path)) {
            // FileChannel opens a directory for reading; its first read would fail instead
            throw new IOException(path + ": is a directory");
        }
        try {
            FileChannel channel = readOnly
                    ? FileChannel.open(path, StandardOpenOption.READ)
                    : FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
            return new XorBackingFile(channel, readOnly, key);
        }
        catch (NoSuchFileException e) {
            throw new IOException(path + ": no such file", e);
        }
        catch (AccessDeniedException e) {
            throw new IOException(path + ": permission denied", e);
        }
    }

    /**
     * Makes {@code path} {@code size} bytes long, writing the key over what it adds: stored XORed, the
     * added range reads as zeros, which a hole would not.
     */
    static void create(Path path, long size, XorKey key)
            throws IOException
    {
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            byte[] buffer = new byte[CHUNK];
            for (long pos = channel.size(); pos < size; ) {
                int n = (int) Math.min(buffer.length, size - pos);
                Arrays.fill(buffer, 0, n, (byte) 0);
                key.apply(buffer, 0, n, pos);
                ByteBuffer chunk = ByteBuffer.wrap(buffer, 0, n);
                while (chunk.hasRemaining()) {
                    pos += channel.write(chunk, pos);
                }
            }
        }
    }

    // The SPI's entry points: each takes what it needs from the kiocb and calls read, write or sync below.

    @Override
    public long readIter(Kiocb kiocb)
    {
        return read(kiocb.iter(), kiocb.pos());
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        return write(kiocb.iter(), kiocb.pos());
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        return sync(kiocb.datasync());
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        return -Errno.EOPNOTSUPP;
    }

    // The I/O.

    /** Reads into {@code iter} from {@code pos}, up to the end of the file; returns the bytes read or -errno. */
    private long read(IovIter iter, long pos)
    {
        byte[] buffer = new byte[(int) Math.min(CHUNK, Math.max(1, iter.count()))];
        long done = 0;
        try {
            long length = Math.min(iter.count(), Math.max(0, channel.size() - pos));
            while (done < length) {
                int wanted = (int) Math.min(buffer.length, length - done);
                int n = 0;
                while (n < wanted) {
                    int read = channel.read(ByteBuffer.wrap(buffer, n, wanted - n), pos + done + n);
                    if (read < 0) {
                        break;
                    }
                    n += read;
                }
                key.apply(buffer, 0, n, pos + done);
                iter.copyToIter(buffer, 0, n);
                done += n;
                if (n < wanted) {
                    break; // the file ended early: a short read, which jloop resubmits
                }
            }
            return done;
        }
        catch (IOException e) {
            return done > 0 ? done : -Errno.EIO;
        }
    }

    /** Writes {@code iter} at {@code pos}, growing the file if need be; returns the bytes written or -errno. */
    private long write(IovIter iter, long pos)
    {
        if (capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        byte[] buffer = new byte[(int) Math.min(CHUNK, Math.max(1, iter.count()))];
        long done = 0;
        while (iter.count() > 0) {
            int n = iter.copyFromIter(buffer, 0, buffer.length);
            key.apply(buffer, 0, n, pos + done);
            ByteBuffer chunk = ByteBuffer.wrap(buffer, 0, n);
            try {
                while (chunk.hasRemaining()) {
                    channel.write(chunk, pos + done + chunk.position());
                }
            }
            catch (IOException e) {
                // the iterator advances by what reached the file only
                iter.revert(n - chunk.position());
                done += chunk.position();
                return done > 0 ? done : -Errno.EIO;
            }
            done += n;
        }
        return done;
    }

    private long sync(boolean datasync)
    {
        try {
            channel.force(!datasync);
            return 0;
        }
        catch (IOException e) {
            return -Errno.EIO;
        }
    }

    @Override
    public long size()
    {
        try {
            return channel.size();
        }
        catch (IOException e) {
            return -Errno.EIO;
        }
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
        channel.close();
    }
}
