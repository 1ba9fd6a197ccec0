package dev.jloop.uring;

import dev.jloop.api.Errno;

import java.io.IOException;

import static java.util.Objects.requireNonNull;

/**
 * A failed io_uring (or supporting) system call: the one place where a {@code -errno} result of
 * {@code io_uring_setup(2)}, {@code io_uring_enter(2)}, {@code io_uring_register(2)}, {@code mmap(2)} and
 * friends becomes an exception, carrying the syscall's name and the errno.
 */
public final class IoUringException
        extends IOException
{
    private final String syscall;
    private final int errno;

    public IoUringException(String syscall, int errno)
    {
        this(syscall, errno, null);
    }

    public IoUringException(String syscall, int errno, String detail)
    {
        super(syscall + " failed: " + Errno.name(errno) + (detail == null ? "" : " (" + detail + ")"));
        this.syscall = requireNonNull(syscall, "syscall is null");
        this.errno = Math.abs(errno);
    }

    /** Checks a syscall result: returns it when {@code >= 0}, throws for {@code -errno}. */
    static int check(String syscall, int res)
            throws IoUringException
    {
        if (res < 0) {
            throw new IoUringException(syscall, -res);
        }
        return res;
    }

    public String syscall()
    {
        return syscall;
    }

    /** The positive errno value, e.g. {@link Errno#EPERM}. */
    public int errno()
    {
        return errno;
    }
}
