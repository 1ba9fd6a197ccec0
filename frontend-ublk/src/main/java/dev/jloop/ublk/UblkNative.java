package dev.jloop.ublk;

import jnr.ffi.LastError;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;

/**
 * The libc calls the ublk driver needs besides io_uring: open, fsync, mmap of the descriptor array
 * (read-only), eventfd and its 8-byte write, each returning {@code -errno} on failure. {@code mmap}
 * takes its address as a {@link Pointer}: jnr-ffi 2.2.17 passes garbage in the sixth argument of a
 * binding with six primitive arguments.
 */
final class UblkNative
{
    static final int O_RDONLY = 0;
    static final int O_RDWR = 2;
    static final int O_CLOEXEC = 02000000;
    static final int PROT_READ = 0x1;
    static final int MAP_SHARED = 0x01;
    static final int MAP_POPULATE = 0x8000;
    static final int EFD_CLOEXEC = 02000000;

    public interface LibC
    {
        int open(String path, int flags, int mode);

        int close(int fd);

        long mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

        int munmap(long addr, long length);

        int eventfd(int initval, int flags);

        long write(int fd, long buf, long count);

        int fsync(int fd);
    }

    private static final LibC LIBC = LibraryLoader.create(LibC.class).failImmediately().load("c");
    private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);

    private UblkNative() {}

    static int open(String path, int flags)
    {
        int fd = LIBC.open(path, flags, 0);
        return fd < 0 ? -lastError() : fd;
    }

    static int close(int fd)
    {
        return LIBC.close(fd) < 0 ? -lastError() : 0;
    }

    static long mmapReadOnly(long length, int fd, long offset)
    {
        long address = LIBC.mmap(null, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, offset);
        return address == -1 ? -lastError() : address;
    }

    static int munmap(long address, long length)
    {
        return LIBC.munmap(address, length) < 0 ? -lastError() : 0;
    }

    static int eventfd()
    {
        int fd = LIBC.eventfd(0, EFD_CLOEXEC);
        return fd < 0 ? -lastError() : fd;
    }

    static long write(int fd, long buf, long count)
    {
        long n = LIBC.write(fd, buf, count);
        return n < 0 ? -lastError() : n;
    }

    static int fsync(int fd)
    {
        return LIBC.fsync(fd) < 0 ? -lastError() : 0;
    }

    private static int lastError()
    {
        return LastError.getLastError(RUNTIME);
    }
}
