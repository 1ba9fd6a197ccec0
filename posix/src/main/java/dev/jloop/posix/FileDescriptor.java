package dev.jloop.posix;

import java.io.IOException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;

import static java.util.Objects.requireNonNull;

/**
 * An open file descriptor and the path it was opened from (for messages). Closing is idempotent;
 * the descriptor number must not be used after {@link #close()}, since the kernel reuses numbers.
 */
public final class FileDescriptor
        implements AutoCloseable
{
    private final int fd;
    private final String path;
    private volatile boolean closed;

    private FileDescriptor(int fd, String path)
    {
        this.fd = fd;
        this.path = requireNonNull(path, "path is null");
    }

    /**
     * Opens {@code path} with {@link Posix} {@code O_*} flags ({@code O_CLOEXEC} is always added).
     *
     * @throws IOException naming the file and the reason (ENOENT, EACCES, EISDIR, EINVAL for
     * O_DIRECT on a file system that refuses it, ...)
     */
    public static FileDescriptor open(Path path, int flags, int mode)
            throws IOException
    {
        String name = path.toString();
        int fd = Posix.open(name, flags | Posix.O_CLOEXEC, mode);
        if (fd < 0) {
            throw Errors.newIOException((flags & Posix.O_DIRECT) != 0 ? "open O_DIRECT" : "open", name, fd);
        }
        return new FileDescriptor(fd, name);
    }

    /**
     * Opens the file behind a block device: {@code O_RDONLY} or {@code O_RDWR}, with
     * {@code O_DIRECT} when {@code direct}. Fails with a message that says what is wrong: missing,
     * no permission, a directory, or a file system that refuses {@code O_DIRECT}.
     */
    public static FileDescriptor openBackingFile(Path path, boolean readOnly, boolean direct)
            throws IOException
    {
        if (Files.isDirectory(path)) {
            // O_RDONLY would open a directory without complaint
            throw new FileSystemException(path.toString(), null, "cannot serve " + path + ": is a directory, not a regular file or block device");
        }
        int flags = (readOnly ? Posix.O_RDONLY : Posix.O_RDWR) | (direct ? Posix.O_DIRECT : 0);
        try {
            return open(path, flags, 0);
        }
        catch (FileSystemException e) {
            if (direct && e.getMessage().contains("(EINVAL)") && Files.exists(path)) {
                throw new FileSystemException(path.toString(), null, e.getMessage() + ": the file system does not support O_DIRECT; serve without --direct");
            }
            throw e;
        }
    }

    /** The descriptor number, for {@link Posix} calls. */
    public int intValue()
    {
        return fd;
    }

    public String path()
    {
        return path;
    }

    public boolean isOpen()
    {
        return !closed;
    }

    @Override
    public void close()
            throws IOException
    {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        Errors.check("close", path, Posix.close(fd));
    }

    @Override
    public String toString()
    {
        return "FileDescriptor{fd=" + fd + ", path=" + path + (closed ? ", closed" : "") + "}";
    }
}
