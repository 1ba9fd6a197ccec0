package dev.jloop.uring;

import dev.jloop.posix.Posix;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.IgnoreError;

/**
 * The io_uring system calls behind {@link Ring}, each returning {@code -errno} on failure; the libc
 * calls around them ({@code mmap}, {@code close}) are {@link Posix}'s.
 *
 * <p>liburing 2.3 (Debian's liburing2) exports {@code io_uring_setup/enter/register} with fixed arity;
 * they return {@code -errno} themselves, so errno need not be saved ({@code @IgnoreError}). Without
 * liburing the raw {@code syscall(2)} of {@link Posix} is used instead, whose enter variant takes its
 * sigset as a {@link Pointer}: jnr-ffi 2.2.17 passes garbage in the sixth of six primitive arguments
 * (see {@link dev.jloop.posix.LibC}).
 */
final class Native
{
    /** x86_64 syscall numbers ({@code arch/x86/entry/syscalls/syscall_64.tbl}). */
    private static final long SYS_IO_URING_SETUP = 425;
    private static final long SYS_IO_URING_ENTER = 426;
    private static final long SYS_IO_URING_REGISTER = 427;

    public interface LibUring
    {
        @IgnoreError
        int io_uring_setup(int entries, Pointer params);

        @IgnoreError
        int io_uring_enter(int fd, int toSubmit, int minComplete, int flags, Pointer sig);

        @IgnoreError
        int io_uring_register(int fd, int opcode, Pointer arg, int nrArgs);
    }

    static final Runtime RUNTIME = Runtime.getSystemRuntime();
    /** {@code null} when liburing is not installed: the raw syscalls are used then. */
    private static final LibUring LIBURING = loadLibUring();

    private Native() {}

    private static LibUring loadLibUring()
    {
        try {
            return LibraryLoader.create(LibUring.class).failImmediately().load("liburing.so.2");
        }
        catch (LinkageError | RuntimeException e) {
            return null;
        }
    }

    static String implementation()
    {
        return LIBURING != null ? "liburing.so.2" : "syscall(2)";
    }

    static int ioUringSetup(int entries, Pointer params)
    {
        if (LIBURING != null) {
            return LIBURING.io_uring_setup(entries, params);
        }
        return (int) Posix.syscall(SYS_IO_URING_SETUP, entries, params);
    }

    static int ioUringEnter(int fd, int toSubmit, int minComplete, int flags)
    {
        if (LIBURING != null) {
            return LIBURING.io_uring_enter(fd, toSubmit, minComplete, flags, null);
        }
        return (int) Posix.syscall(SYS_IO_URING_ENTER, fd, toSubmit, minComplete, flags, null);
    }

    static int ioUringRegister(int fd, int opcode, Pointer arg, int nrArgs)
    {
        if (LIBURING != null) {
            return LIBURING.io_uring_register(fd, opcode, arg, nrArgs);
        }
        return (int) Posix.syscall(SYS_IO_URING_REGISTER, fd, opcode, arg, nrArgs);
    }
}
