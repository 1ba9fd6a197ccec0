package dev.jloop.posix;

import dev.jloop.api.Errno;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;

/**
 * The one place where a {@code -errno} from a native call becomes an exception, as Netty's
 * {@code unix.Errors}: the message names the call, the file and the C library's text, e.g.
 * {@code "open(/srv/disk.img) failed: No such file or directory (ENOENT)"}. The I/O path never comes
 * here: it passes {@code -errno} on as a result.
 */
public final class Errors
{
    private Errors() {}

    /**
     * An exception for {@code res} (a negative errno) returned by {@code syscall} on {@code path}.
     * Missing files and refused permissions become {@link NoSuchFileException} and
     * {@link AccessDeniedException}, like the JDK's own file calls.
     */
    public static IOException newIOException(String syscall, String path, long res)
    {
        if (res >= 0) {
            throw new IllegalArgumentException("not an error: " + res);
        }
        String reason = Posix.strerror(res) + " (" + errnoName(res) + ")";
        String message = syscall + "(" + path + ") failed: " + reason;
        if (res == -Errno.ENOENT) {
            return new NoSuchFileException(path, null, message);
        }
        if (res == -Posix.EACCES || res == -Errno.EPERM) {
            return new AccessDeniedException(path, null, message);
        }
        return new FileSystemException(path, null, message);
    }

    /** Returns {@code res} when it is not an error, otherwise throws {@link #newIOException}. */
    public static long check(String syscall, String path, long res)
            throws IOException
    {
        if (res < 0) {
            throw newIOException(syscall, path, res);
        }
        return res;
    }

    private static String errnoName(long res)
    {
        switch ((int) -res) {
            case Posix.ENXIO: return "ENXIO";
            case Posix.EACCES: return "EACCES";
            case Posix.EISDIR: return "EISDIR";
            default: return Errno.name(res);
        }
    }
}
