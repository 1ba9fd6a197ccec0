package dev.jloop.posix;

import jnr.ffi.Pointer;

/**
 * The libc functions of the data path and of the rarer calls: I/O for the backends that do it with
 * system calls of their own, durability, space, the raw {@code syscall(2)}, error texts, and the
 * pipe of a connection's zero-copy reads and writes. A server
 * with the io_uring backend does its I/O on rings and may never call them, so they are bound apart
 * from {@link LibC}, the first time one is called. The rules of {@link LibC} hold here too: native
 * addresses as {@code long}, never six primitive parameters ({@code syscall} takes its last argument
 * as a {@link Pointer} for that reason).
 */
public interface LibCIo
{
    long pread(int fd, long buf, long count, long offset);

    long pwrite(int fd, long buf, long count, long offset);

    int fsync(int fd);

    int fdatasync(int fd);

    int fallocate(int fd, int mode, long offset, long length);

    String strerror(int errnum);

    /** {@code pipe2(2)}: {@code fds} is the address of two ints, the read end and the write end. */
    int pipe2(long fds, int flags);

    /** {@code fcntl(2)} with an int argument; variadic in C, bound with a fixed arity (fine on x86-64). */
    int fcntl(int fd, int cmd, int arg);

    int socketpair(int domain, int type, int protocol, int[] sv);

    int setsockopt(int fd, int level, int optname, int[] optval, int optlen);

    int getsockopt(int fd, int level, int optname, int[] optval, int[] optlen);

    /** {@code splice(2)}; the offsets are pointers (null for a pipe or a socket), so no six primitive parameters. */
    long splice(int fdIn, Pointer offIn, int fdOut, Pointer offOut, long len, int flags);

    /** {@code ioctl(2)} with an int result argument; variadic in C, bound with a fixed arity (fine on x86-64). */
    int ioctl(int fd, long request, int[] argp);

    /** {@code syscall(2)} with one argument and a pointer (variadic in C; fixed arity is fine on x86-64). */
    long syscall(long number, long arg1, Pointer arg2);

    long syscall(long number, long arg1, long arg2, Pointer arg3, long arg4);

    long syscall(long number, long arg1, long arg2, long arg3, long arg4, Pointer arg5);
}
