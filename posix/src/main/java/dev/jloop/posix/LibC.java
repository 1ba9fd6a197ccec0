package dev.jloop.posix;

/**
 * The libc functions jloop binds through jnr-ffi. Buffers are passed as native addresses
 * ({@code long}), which is the same as a pointer on x86-64 and costs no {@code Pointer} per call.
 *
 * <p>No binding may have exactly six primitive parameters: jnr-ffi 2.2.17 with jffi 1.3.13 passes
 * garbage in the sixth (see {@code shared/facts/iouring.md} §2).
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
}
