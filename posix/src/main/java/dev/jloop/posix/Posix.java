package dev.jloop.posix;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;

/**
 * The libc calls the JDK lacks, for every backend: {@code open} with {@code O_DIRECT},
 * {@code pread}/{@code pwrite} on native addresses, {@code fdatasync}, {@code fallocate},
 * {@code lseek} with {@code SEEK_DATA}/{@code SEEK_HOLE}; and for the io_uring rings and the ublk
 * driver: {@code mmap} of a ring or descriptor array, {@code eventfd} and its 8-byte {@code write},
 * the raw {@code syscall(2)}; {@code pipe2} and {@code fcntl} for the pipe of a zero-copy splice.
 *
 * <p>Every call returns a result {@code >= 0} or {@code -errno}: no exception and no allocation on
 * the I/O path. {@link Errors} turns a {@code -errno} into an {@link java.io.IOException} where one is
 * wanted. Calls interrupted by a signal ({@code EINTR}) are retried here. Constants are the Linux
 * x86-64 values ({@code asm-generic/fcntl.h}, {@code linux/fs.h}, {@code asm-generic/mman-common.h},
 * {@code linux/eventfd.h}).
 */
public final class Posix
{
    public static final int O_RDONLY = 0;
    public static final int O_WRONLY = 1;
    public static final int O_RDWR = 2;
    public static final int O_CREAT = 0100;
    public static final int O_EXCL = 0200;
    public static final int O_TRUNC = 01000;
    public static final int O_DIRECT = 040000;
    public static final int O_CLOEXEC = 02000000;

    public static final int SEEK_SET = 0;
    public static final int SEEK_CUR = 1;
    public static final int SEEK_END = 2;
    public static final int SEEK_DATA = 3;
    public static final int SEEK_HOLE = 4;

    public static final int POSIX_FADV_NORMAL = 0;
    public static final int POSIX_FADV_RANDOM = 1;
    public static final int POSIX_FADV_SEQUENTIAL = 2;
    public static final int POSIX_FADV_WILLNEED = 3;
    public static final int POSIX_FADV_DONTNEED = 4;

    public static final int PROT_READ = 0x1;
    public static final int PROT_WRITE = 0x2;
    public static final int MAP_SHARED = 0x01;
    public static final int MAP_POPULATE = 0x8000;
    private static final long MAP_FAILED = -1;

    public static final int EFD_CLOEXEC = O_CLOEXEC;

    /** {@code fcntl(2)}: the capacity of a pipe in bytes (Linux 2.6.35+, {@code linux/fcntl.h}). */
    public static final int F_SETPIPE_SZ = 1031;
    public static final int F_GETPIPE_SZ = 1032;
    /** {@code ioctl(2)}: bytes ready to read on a socket ({@code asm-generic/ioctls.h}). */
    private static final long FIONREAD = 0x541B;
    public static final int AF_UNIX = 1;
    public static final int SOCK_STREAM = 1;
    public static final int SOCK_CLOEXEC = O_CLOEXEC;
    public static final int IPPROTO_TCP = 6;
    /** {@code tcp(7)}: how many bytes a TCP socket holds unsent before it stops taking more (Linux 3.12+). */
    public static final int TCP_NOTSENT_LOWAT = 25;

    private static final LibC LIBC = LibraryLoader.create(LibC.class).load("c");
    private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);

    /** {@link LibCIo}, bound when first used (the JVM initialises a class on its first use, once, thread-safely). */
    private static final class Io
    {
        static final LibCIo LIBC = LibraryLoader.create(LibCIo.class).load("c");
    }

    private Posix() {}

    /** {@code open(2)}; returns the descriptor or {@code -errno}. See {@link FileDescriptor#open} for the checked form. */
    public static int open(String path, int flags, int mode)
    {
        int fd;
        do {
            fd = LIBC.open(path, flags, mode);
        }
        while (fd < 0 && lastError() == Errors.EINTR);
        return fd < 0 ? -lastError() : fd;
    }

    /** {@code close(2)}; never retried (Linux releases the descriptor even when close fails with EINTR). */
    public static int close(int fd)
    {
        return LIBC.close(fd) < 0 ? -lastError() : 0;
    }

    /**
     * {@code pread(2)} of {@code count} bytes into native memory at {@code address}. One call: a short
     * count from a regular file means end of file.
     */
    public static long pread(int fd, long address, long count, long offset)
    {
        long n;
        do {
            n = Io.LIBC.pread(fd, address, count, offset);
        }
        while (n < 0 && lastError() == Errors.EINTR);
        return n < 0 ? -lastError() : n;
    }

    /** {@code pwrite(2)} of {@code count} bytes from native memory at {@code address}. One call; may be short. */
    public static long pwrite(int fd, long address, long count, long offset)
    {
        long n;
        do {
            n = Io.LIBC.pwrite(fd, address, count, offset);
        }
        while (n < 0 && lastError() == Errors.EINTR);
        return n < 0 ? -lastError() : n;
    }

    public static int fsync(int fd)
    {
        int res;
        do {
            res = Io.LIBC.fsync(fd) < 0 ? -lastError() : 0;
        }
        while (res == -Errors.EINTR);
        return res;
    }

    public static int fdatasync(int fd)
    {
        int res;
        do {
            res = Io.LIBC.fdatasync(fd) < 0 ? -lastError() : 0;
        }
        while (res == -Errors.EINTR);
        return res;
    }

    /** {@code fallocate(2)} with {@link dev.jloop.api.Fallocate} mode bits. */
    public static int fallocate(int fd, int mode, long offset, long length)
    {
        int res;
        do {
            res = Io.LIBC.fallocate(fd, mode, offset, length) < 0 ? -lastError() : 0;
        }
        while (res == -Errors.EINTR);
        return res;
    }

    /**
     * {@code lseek(2)}; with {@link #SEEK_DATA}/{@link #SEEK_HOLE} it finds the next data or hole
     * ({@code -ENXIO} when there is no data at or after {@code offset}).
     */
    public static long lseek(int fd, long offset, int whence)
    {
        long res = LIBC.lseek(fd, offset, whence);
        return res < 0 ? -lastError() : res;
    }

    /** Size of the file or block device behind {@code fd} ({@code lseek(fd, 0, SEEK_END)}); or {@code -errno}. */
    public static long size(int fd)
    {
        return lseek(fd, 0, SEEK_END);
    }

    public static int ftruncate(int fd, long length)
    {
        int res;
        do {
            res = LIBC.ftruncate(fd, length) < 0 ? -lastError() : 0;
        }
        while (res == -Errors.EINTR);
        return res;
    }

    /** {@code posix_fadvise(2)}; a hint, so callers may ignore the result. */
    public static int fadvise(int fd, long offset, long length, int advice)
    {
        return -LIBC.posix_fadvise(fd, offset, length, advice);
    }

    /** {@code write(2)} of {@code count} bytes from native memory at {@code address}. One call; may be short. */
    public static long write(int fd, long address, long count)
    {
        long n;
        do {
            n = LIBC.write(fd, address, count);
        }
        while (n < 0 && lastError() == Errors.EINTR);
        return n < 0 ? -lastError() : n;
    }

    /**
     * {@code mmap(2)} of {@code length} bytes of {@code fd} at {@code offset}, where the kernel chooses;
     * returns the address or {@code -errno}.
     */
    public static long mmap(long length, int prot, int flags, int fd, long offset)
    {
        long address = LIBC.mmap(null, length, prot, flags, fd, offset);
        return address == MAP_FAILED ? -lastError() : address;
    }

    public static int munmap(long address, long length)
    {
        return LIBC.munmap(address, length) < 0 ? -lastError() : 0;
    }

    /** {@code eventfd(2)}; returns the descriptor or {@code -errno}. */
    public static int eventfd(int initval, int flags)
    {
        int fd = LIBC.eventfd(initval, flags);
        return fd < 0 ? -lastError() : fd;
    }

    /** {@code pipe2(2)}: writes the read and the write end to the two ints at {@code fds}; returns 0 or {@code -errno}. */
    public static int pipe2(long fds, int flags)
    {
        return Io.LIBC.pipe2(fds, flags) < 0 ? -lastError() : 0;
    }

    /** {@code fcntl(2)} with an int argument; returns its result or {@code -errno}. */
    public static int fcntl(int fd, int cmd, int arg)
    {
        int res = Io.LIBC.fcntl(fd, cmd, arg);
        return res < 0 ? -lastError() : res;
    }

    /**
     * {@code splice(2)} between descriptors that have no offset (pipes, sockets); returns the bytes moved
     * or {@code -errno}. Not retried on EINTR.
     */
    public static long splice(int fdIn, int fdOut, long length, int flags)
    {
        long n = Io.LIBC.splice(fdIn, null, fdOut, null, length, flags);
        return n < 0 ? -lastError() : n;
    }

    /**
     * The bytes a socket has ready to read ({@code ioctl(FIONREAD)}, {@code socket(7)}); {@code scratch}
     * is an int[1] of the caller's. Returns them or {@code -errno}.
     */
    public static int inputBytes(int fd, int[] scratch)
    {
        int res = Io.LIBC.ioctl(fd, FIONREAD, scratch);
        return res < 0 ? -lastError() : scratch[0];
    }

    /** {@code setsockopt(2)} of an int option; returns 0 or {@code -errno}. */
    public static int setSocketOption(int fd, int level, int name, int value)
    {
        return Io.LIBC.setsockopt(fd, level, name, new int[] {value}, Integer.BYTES) < 0 ? -lastError() : 0;
    }

    /** {@code getsockopt(2)} of an int option: its value as an unsigned int, or {@code -errno}. */
    public static long socketOption(int fd, int level, int name)
    {
        int[] value = new int[1];
        int res = Io.LIBC.getsockopt(fd, level, name, value, new int[] {Integer.BYTES});
        return res < 0 ? -lastError() : Integer.toUnsignedLong(value[0]);
    }

    /** {@code socketpair(2)}: two connected sockets into {@code fds}; returns 0 or {@code -errno}. */
    public static int socketpair(int domain, int type, int[] fds)
    {
        return Io.LIBC.socketpair(domain, type, 0, fds) < 0 ? -lastError() : 0;
    }

    /**
     * {@code syscall(2)}: the system call {@code number}, for which libc has no wrapper; returns its
     * result or {@code -errno}. Not retried on EINTR: the caller knows whether its call may be.
     */
    public static long syscall(long number, long arg1, Pointer arg2)
    {
        return result(Io.LIBC.syscall(number, arg1, arg2));
    }

    public static long syscall(long number, long arg1, long arg2, Pointer arg3, long arg4)
    {
        return result(Io.LIBC.syscall(number, arg1, arg2, arg3, arg4));
    }

    public static long syscall(long number, long arg1, long arg2, long arg3, long arg4, Pointer arg5)
    {
        return result(Io.LIBC.syscall(number, arg1, arg2, arg3, arg4, arg5));
    }

    /** The C library's message for a positive or negative errno, e.g. "No such file or directory". */
    public static String strerror(long errno)
    {
        return Io.LIBC.strerror((int) Math.abs(errno));
    }

    private static long result(long res)
    {
        return res < 0 ? -lastError() : res;
    }

    private static int lastError()
    {
        return RUNTIME.getLastError();
    }
}
