package dev.jloop.posix;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;

/**
 * The one place where a {@code -errno} from a native call becomes an exception, as Netty's
 * {@code unix.Errors}: the message names the call, the C library's text and the errno, e.g.
 * {@code "open(/srv/disk.img) failed: No such file or directory (ENOENT)"} or
 * {@code "io_uring_setup failed: Operation not permitted (EPERM)"}. The I/O path never comes here:
 * it passes {@code -errno} on as a result.
 *
 * <p>Names and values come from the platform's errno table (jnr-constants, generated from the C
 * library's {@code errno.h}), the text from the C library's {@code strerror}: nothing here is a
 * second hand-written table. The constants below are the errnos the native layer tests for;
 * {@link dev.jloop.api.Errno} keeps the ones a backend returns through the SPI.
 */
public final class Errors
{
    public static final int EPERM = value(jnr.constants.platform.Errno.EPERM);
    public static final int ENOENT = value(jnr.constants.platform.Errno.ENOENT);
    public static final int EINTR = value(jnr.constants.platform.Errno.EINTR);
    public static final int ENXIO = value(jnr.constants.platform.Errno.ENXIO);
    public static final int EBADF = value(jnr.constants.platform.Errno.EBADF);
    public static final int EAGAIN = value(jnr.constants.platform.Errno.EAGAIN);
    public static final int EACCES = value(jnr.constants.platform.Errno.EACCES);
    public static final int EBUSY = value(jnr.constants.platform.Errno.EBUSY);
    public static final int EEXIST = value(jnr.constants.platform.Errno.EEXIST);
    public static final int ENODEV = value(jnr.constants.platform.Errno.ENODEV);
    public static final int EISDIR = value(jnr.constants.platform.Errno.EISDIR);
    public static final int EINVAL = value(jnr.constants.platform.Errno.EINVAL);
    public static final int ENOTTY = value(jnr.constants.platform.Errno.ENOTTY);
    public static final int ENOSYS = value(jnr.constants.platform.Errno.ENOSYS);
    public static final int EOPNOTSUPP = value(jnr.constants.platform.Errno.EOPNOTSUPP);
    public static final int ECANCELED = value(jnr.constants.platform.Errno.ECANCELED);
    public static final int ENOBUFS = value(jnr.constants.platform.Errno.ENOBUFS);

    private Errors() {}

    /**
     * The symbolic name of a positive or negative errno value, e.g. {@code "ENOENT"};
     * {@code "errno N"} when the platform has no name for it.
     */
    public static String name(long errno)
    {
        int e = (int) Math.abs(errno);
        if (e == EOPNOTSUPP) {
            // glibc and jnr-constants also call it ENOTSUP; the kernel's headers know only EOPNOTSUPP
            return "EOPNOTSUPP";
        }
        jnr.constants.platform.Errno constant = jnr.constants.platform.Errno.valueOf(e);
        return constant.defined() ? constant.name() : "errno " + e;
    }

    /** The C library's text and the name of a positive or negative errno, e.g. {@code "No such file or directory (ENOENT)"}. */
    public static String describe(long errno)
    {
        return Posix.strerror(errno) + " (" + name(errno) + ")";
    }

    /** A {@link NativeIoException} for {@code res} (a negative errno) returned by {@code syscall}. */
    public static NativeIoException newIOException(String syscall, long res)
    {
        return new NativeIoException(syscall, res);
    }

    /** Returns {@code res} when it is not an error, otherwise throws {@link #newIOException(String, long)}. */
    public static int check(String syscall, int res)
            throws NativeIoException
    {
        if (res < 0) {
            throw newIOException(syscall, res);
        }
        return res;
    }

    /**
     * An exception for {@code res} (a negative errno) returned by {@code syscall} on {@code path}.
     * Missing files and refused permissions become {@link NoSuchFileException} and
     * {@link AccessDeniedException}, like the JDK's own file calls.
     */
    public static IOException newIOException(String syscall, String path, long res)
    {
        String message = syscall + "(" + path + ") failed: " + describe(checkError(res));
        if (res == -ENOENT) {
            return new NoSuchFileException(path, null, message);
        }
        if (res == -EACCES || res == -EPERM) {
            return new AccessDeniedException(path, null, message);
        }
        return new FileSystemException(path, null, message);
    }

    /** Returns {@code res} when it is not an error, otherwise throws {@link #newIOException(String, String, long)}. */
    public static long check(String syscall, String path, long res)
            throws IOException
    {
        if (res < 0) {
            throw newIOException(syscall, path, res);
        }
        return res;
    }

    static long checkError(long res)
    {
        if (res >= 0) {
            throw new IllegalArgumentException("not an error: " + res);
        }
        return res;
    }

    private static int value(jnr.constants.platform.Errno errno)
    {
        if (!errno.defined()) {
            throw new IllegalStateException(errno.name() + " is not defined on this platform");
        }
        return errno.intValue();
    }
}
