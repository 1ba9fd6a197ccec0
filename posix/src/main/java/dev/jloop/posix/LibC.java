package dev.jloop.posix;

import jnr.ffi.Pointer;

/**
 * The libc functions jloop binds through jnr-ffi, every one of them: the backends', the io_uring
 * rings' and the ublk driver's. Buffers are passed as native addresses ({@code long}), which is the
 * same as a pointer on x86-64 and costs no {@code Pointer} per call.
 *
 * <p>No binding may have exactly six primitive parameters: jnr-ffi 2.2.17 with jffi 1.3.13 passes
 * garbage in the sixth. {@code mmap} takes its address and the five-argument {@code syscall} its last
 * argument as a {@link Pointer} for that reason.
 *
 * <p>Not jnr-posix: of the calls here it would cover only {@code open}, {@code close} and
 * {@code strerror} (its {@code pread}/{@code pwrite} take no native addresses, and it has no
 * {@code fallocate}, {@code eventfd} or {@code syscall}), and loading it binds all of its ~140
 * functions at once, as much CPU at start as the rest of jloop's jnr-ffi setup.
 */
public interface LibC
{
    /** {@code open(2)}; variadic in C, bound with a fixed arity as jnr-posix does (fine on x86-64). */
    int open(String path, int flags, int mode);

    int close(int fd);

    long pread(int fd, long buf, long count, long offset);

    long pwrite(int fd, long buf, long count, long offset);

    int fsync(int fd);

    int fdatasync(int fd);

    int fallocate(int fd, int mode, long offset, long length);

    long lseek(int fd, long offset, int whence);

    int ftruncate(int fd, long length);

    /** Returns the error number itself, not -1 with errno. */
    int posix_fadvise(int fd, long offset, long length, int advice);

    String strerror(int errnum);

    long write(int fd, long buf, long count);

    long mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

    int munmap(long addr, long length);

    int eventfd(int initval, int flags);

    int socketpair(int domain, int type, int protocol, int[] sv);

    /** {@code syscall(2)} with one argument and a pointer (variadic in C; fixed arity is fine on x86-64). */
    long syscall(long number, long arg1, Pointer arg2);

    long syscall(long number, long arg1, long arg2, Pointer arg3, long arg4);

    long syscall(long number, long arg1, long arg2, long arg3, long arg4, Pointer arg5);
}
