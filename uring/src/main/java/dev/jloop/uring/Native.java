package dev.jloop.uring;

import jnr.ffi.LastError;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.IgnoreError;

/**
 * The system calls behind {@link Ring}, each returning {@code -errno} on failure.
 *
 * <p>liburing 2.3 (Debian's liburing2) exports {@code io_uring_setup/enter/register} with fixed arity;
 * they return {@code -errno} themselves, so errno need not be saved ({@code @IgnoreError}). Without
 * liburing the raw {@code syscall(2)} is bound instead. No binding here has exactly six primitive
 * arguments: jnr-ffi 2.2.17 passes garbage in the sixth of those (see the io_uring facts), so
 * {@code mmap} takes its address and the syscall variant of enter its sigset as a {@link Pointer}.
 */
final class Native
{
    /** x86_64 syscall numbers ({@code arch/x86/entry/syscalls/syscall_64.tbl}). */
    private static final long SYS_IO_URING_SETUP = 425;
    private static final long SYS_IO_URING_ENTER = 426;
    private static final long SYS_IO_URING_REGISTER = 427;

    static final int PROT_READ = 0x1;
    static final int PROT_WRITE = 0x2;
    static final int MAP_SHARED = 0x01;
    static final int MAP_POPULATE = 0x8000;
    static final long MAP_FAILED = -1;

    public interface LibUring
    {
        @IgnoreError
        int io_uring_setup(int entries, Pointer params);

        @IgnoreError
        int io_uring_enter(int fd, int toSubmit, int minComplete, int flags, Pointer sig);

        @IgnoreError
        int io_uring_register(int fd, int opcode, Pointer arg, int nrArgs);
    }

    public interface LibC
    {
        long mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

        int munmap(long addr, long length);

        int close(int fd);

        long syscall(long number, long entries, Pointer params);

        long syscall(long number, long fd, long toSubmit, long minComplete, long flags, Pointer sig);

        long syscall(long number, long fd, long opcode, Pointer arg, long nrArgs);
    }

    static final Runtime RUNTIME = Runtime.getSystemRuntime();
    static final LibC LIBC = LibraryLoader.create(LibC.class).failImmediately().load("c");
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
        return result(LIBC.syscall(SYS_IO_URING_SETUP, entries, params));
    }

    static int ioUringEnter(int fd, int toSubmit, int minComplete, int flags)
    {
        if (LIBURING != null) {
            return LIBURING.io_uring_enter(fd, toSubmit, minComplete, flags, null);
        }
        return result(LIBC.syscall(SYS_IO_URING_ENTER, fd, toSubmit, minComplete, flags, null));
    }

    static int ioUringRegister(int fd, int opcode, Pointer arg, int nrArgs)
    {
        if (LIBURING != null) {
            return LIBURING.io_uring_register(fd, opcode, arg, nrArgs);
        }
        return result(LIBC.syscall(SYS_IO_URING_REGISTER, fd, opcode, arg, nrArgs));
    }

    /** Maps {@code length} bytes of the ring fd at {@code offset}; returns the address or {@code -errno}. */
    static long mmap(long length, int fd, long offset)
    {
        long address = LIBC.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
        return address == MAP_FAILED ? -lastError() : address;
    }

    static int munmap(long address, long length)
    {
        return LIBC.munmap(address, length) < 0 ? -lastError() : 0;
    }

    static int close(int fd)
    {
        return LIBC.close(fd) < 0 ? -lastError() : 0;
    }

    private static int result(long res)
    {
        return res < 0 ? -lastError() : (int) res;
    }

    private static int lastError()
    {
        return LastError.getLastError(RUNTIME);
    }
}
