package dev.jloop.posix;

import java.io.IOException;

import static java.util.Objects.requireNonNull;

/**
 * A system call that failed, with its name and errno, worded by {@link Errors}:
 * {@code "io_uring_enter failed: Bad file descriptor (EBADF)"}, and a hint for the user after it where
 * one helps. Callers test {@link #errno()}, never the message.
 */
public class NativeIoException
        extends IOException
{
    private final String syscall;
    private final int errno;

    /**
     * @param syscall the call, with what it was called on where that helps, e.g.
     * {@code "io_uring_register(IORING_REGISTER_FILES)"}
     * @param res the call's result: a negative errno
     */
    public NativeIoException(String syscall, long res)
    {
        this(syscall, res, null);
    }

    /** With {@code hint} (or {@code null}), what the user can do about it, after the reason. */
    public NativeIoException(String syscall, long res, String hint)
    {
        super(requireNonNull(syscall, "syscall is null") + " failed: " + Errors.describe(Errors.checkError(res)) + (hint == null ? "" : "; " + hint));
        this.syscall = syscall;
        this.errno = (int) -res;
    }

    public String syscall()
    {
        return syscall;
    }

    /** The positive errno value, e.g. {@link Errors#EPERM}. */
    public int errno()
    {
        return errno;
    }
}
