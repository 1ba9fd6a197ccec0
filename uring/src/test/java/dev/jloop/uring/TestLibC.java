package dev.jloop.uring;

import jnr.ffi.LibraryLoader;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The few libc calls the ring tests need to get file descriptors. */
final class TestLibC
{
    public interface LibC
    {
        int open(String path, int flags, int mode);

        int close(int fd);

        int pipe(int[] fds);

        long write(int fd, byte[] buffer, long count);
    }

    static final int O_RDWR = 02;
    static final int O_CREAT = 0100;
    static final int O_CLOEXEC = 02000000;

    static final LibC LIBC = LibraryLoader.create(LibC.class).load("c");

    private TestLibC() {}

    static int open(Path path)
    {
        int fd = LIBC.open(path.toString(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        assertTrue(fd >= 0, "open " + path);
        return fd;
    }
}
