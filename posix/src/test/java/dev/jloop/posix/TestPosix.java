package dev.jloop.posix;

import com.kenai.jffi.MemoryIO;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.TargetTempDirFactory;
import jnr.ffi.LibraryLoader;
import jnr.ffi.provider.MemoryManager;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestPosix
{
    private static final MemoryManager MEMORY = jnr.ffi.Runtime.getSystemRuntime().getMemoryManager();
    private static final int NOBODY = 65534;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    @Test
    public void testOpenMissingFileNamesSyscallPathAndReason()
    {
        Path missing = dir.resolve("missing.img");
        NoSuchFileException e = assertThrows(NoSuchFileException.class, () -> FileDescriptor.open(missing, Posix.O_RDWR, 0));
        assertTrue(e.getMessage().contains("open(" + missing + ")"), e.getMessage());
        assertTrue(e.getMessage().contains("No such file or directory (ENOENT)"), e.getMessage());
    }

    @Test
    public void testOpenDirectoryForWriteFails()
    {
        FileSystemException e = assertThrows(FileSystemException.class, () -> FileDescriptor.open(dir, Posix.O_RDWR, 0));
        assertTrue(e.getMessage().contains("EISDIR"), e.getMessage());
    }

    @Test
    public void testOpenWithoutPermission()
            throws Throwable
    {
        Path file = Files.createFile(dir.resolve("secret"));
        Files.setPosixFilePermissions(file, Set.of());
        // others may look into the directory: the file's own mode is what refuses
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx--x--x"));
        asUnprivilegedUser(() -> {
            int fd = Posix.open(file.toString(), Posix.O_RDWR, 0);
            if (fd >= 0) {
                Posix.close(fd);
            }
            assertEquals(-Errors.EACCES, fd, "open(2) of a file of mode 000 as an unprivileged user: " + (fd >= 0 ? "opened" : Errors.name(fd)));
            AccessDeniedException e = assertThrows(AccessDeniedException.class, () -> FileDescriptor.open(file, Posix.O_RDWR, 0));
            assertTrue(e.getMessage().contains("open(" + file + ")") && e.getMessage().contains("(EACCES)"), e.getMessage());
            assertThrows(AccessDeniedException.class, () -> FileDescriptor.openBackingFile(file, true, false), "a backing file without permission");
        });
    }

    @Test
    public void testOpenBackingFileSaysWhatIsWrong()
    {
        Path missing = dir.resolve("missing.img");
        NoSuchFileException e = assertThrows(NoSuchFileException.class, () -> FileDescriptor.openBackingFile(missing, false, false));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("No such file"), e.getMessage());
        // O_RDONLY would open a directory without complaint
        FileSystemException directory = assertThrows(FileSystemException.class, () -> FileDescriptor.openBackingFile(dir, true, false));
        assertTrue(directory.getMessage().contains(dir.toString()) && directory.getMessage().contains("is a directory"), directory.getMessage());
    }

    @Test
    public void testPreadPwriteOnNativeAddress()
            throws IOException
    {
        try (FileDescriptor fd = FileDescriptor.open(dir.resolve("data"), Posix.O_RDWR | Posix.O_CREAT, 0644)) {
            ByteBuffer out = ByteBuffer.allocateDirect(100);
            for (int i = 0; i < 100; i++) {
                out.put(i, (byte) i);
            }
            assertEquals(100, Posix.pwrite(fd.intValue(), address(out), 100, 1000));
            assertEquals(1100, Posix.size(fd.intValue()));

            ByteBuffer in = ByteBuffer.allocateDirect(200);
            // a short read at end of file
            assertEquals(100, Posix.pread(fd.intValue(), address(in), 200, 1000));
            for (int i = 0; i < 100; i++) {
                assertEquals((byte) i, in.get(i));
            }
            assertEquals(0, Posix.pread(fd.intValue(), address(in), 200, 5000));
            assertEquals(0, Posix.fdatasync(fd.intValue()));
            assertEquals(0, Posix.fsync(fd.intValue()));
            assertEquals(0, Posix.fadvise(fd.intValue(), 0, 0, Posix.POSIX_FADV_RANDOM));
        }
    }

    @Test
    public void testErrorsAreNegativeErrno()
    {
        assertEquals(-Errno.EBADF, Posix.pread(-1, 0, 1, 0));
        assertEquals(-Errno.EBADF, Posix.fdatasync(-1));
        assertEquals(-Errno.EBADF, Posix.fallocate(-1, 0, 0, 4096));
        assertEquals(-Errno.EBADF, Posix.lseek(-1, 0, Posix.SEEK_DATA));
        assertEquals(-Errno.EBADF, Posix.fadvise(-1, 0, 0, Posix.POSIX_FADV_RANDOM));
        assertEquals("Bad file descriptor", Posix.strerror(-Errno.EBADF));
    }

    @Test
    public void testPunchHoleAndExtents()
            throws IOException
    {
        Path file = dir.resolve("sparse");
        byte[] ones = new byte[1 << 20];
        Arrays.fill(ones, (byte) 1);
        Files.write(file, ones);
        try (FileDescriptor fd = FileDescriptor.open(file, Posix.O_RDWR, 0)) {
            assertEquals(0, Posix.fallocate(fd.intValue(), Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 256 << 10, 256 << 10));
            assertEquals(1 << 20, Posix.size(fd.intValue()));

            List<long[]> extents = new ArrayList<>();
            assertEquals(0, Extents.report(fd.intValue(), 0, 2 << 20, (offset, length, type) -> extents.add(new long[] {offset, length, type})));
            int hole = ExtentSink.HOLE | ExtentSink.ZERO;
            assertEquals(4, extents.size(), () -> extents.stream().map(Arrays::toString).toList().toString());
            assertArrayEquals(new long[] {0, 256 << 10, ExtentSink.DATA}, extents.get(0));
            assertArrayEquals(new long[] {256 << 10, 256 << 10, hole}, extents.get(1));
            assertArrayEquals(new long[] {512 << 10, 512 << 10, ExtentSink.DATA}, extents.get(2));
            // past end of file reads as zeros
            assertArrayEquals(new long[] {1 << 20, 1 << 20, hole}, extents.get(3));

            List<long[]> first = new ArrayList<>();
            assertEquals(0, Extents.report(fd.intValue(), 100, 300 << 10, (offset, length, type) -> {
                first.add(new long[] {offset, length, type});
                return false;
            }));
            assertEquals(1, first.size());
            assertArrayEquals(new long[] {100, (256 << 10) - 100, ExtentSink.DATA}, first.get(0));
        }
        byte[] back = Files.readAllBytes(file);
        for (int i = 0; i < back.length; i++) {
            assertEquals(i >= 256 << 10 && i < 512 << 10 ? 0 : 1, back[i], "byte " + i);
        }
    }

    @Test
    public void testEventfdMmapAndSyscall()
            throws IOException
    {
        int eventFd = Posix.eventfd(0, Posix.EFD_CLOEXEC);
        assertTrue(eventFd >= 0, Errors.name(eventFd));
        try {
            ByteBuffer one = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder()).putLong(0, 1);
            assertEquals(8, Posix.write(eventFd, address(one), 8));
        }
        finally {
            assertEquals(0, Posix.close(eventFd));
        }

        Path file = dir.resolve("mapped");
        Files.write(file, new byte[] {42, 43});
        try (FileDescriptor fd = FileDescriptor.open(file, Posix.O_RDONLY, 0)) {
            long address = Posix.mmap(4096, Posix.PROT_READ, Posix.MAP_SHARED, fd.intValue(), 0);
            assertTrue(address > 0, Errors.name(address));
            assertEquals(43, MemoryIO.getInstance().getByte(address + 1));
            assertEquals(0, Posix.munmap(address, 4096));
            assertEquals(-Errno.EBADF, Posix.mmap(4096, Posix.PROT_READ, Posix.MAP_SHARED, -1, 0));
        }

        // getpid(2), x86_64 number 39
        assertEquals(ProcessHandle.current().pid(), Posix.syscall(39, 0, null));
        assertEquals(-Errno.EBADF, Posix.syscall(3 /* close */, -1, null));
    }

    @Test
    public void testCloseIsIdempotent()
            throws IOException
    {
        FileDescriptor fd = FileDescriptor.open(Files.createFile(dir.resolve("f")), Posix.O_RDONLY, 0);
        assertTrue(fd.isOpen());
        fd.close();
        fd.close();
        assertFalse(fd.isOpen());
        assertEquals(-Errno.EBADF, Posix.fdatasync(fd.intValue()));
    }

    private static long address(ByteBuffer buffer)
    {
        return MEMORY.newPointer(buffer).address();
    }

    /** The libc calls that change whom this thread's file access is checked as. */
    public interface FileSystemUser
    {
        int geteuid();

        int setfsuid(int uid);
    }

    /**
     * Runs {@code test} in this thread with permission checks of an unprivileged user. Root's
     * CAP_DAC_OVERRIDE opens any file, and CI runs as root: there the thread's file-system user
     * becomes nobody for the while ({@code setfsuid(2)}, which changes the calling thread alone and
     * drops the file capabilities with it), so that permission-denied paths are tested rather than
     * skipped. Where that is refused, the test is skipped, and fails on CI.
     */
    private static void asUnprivilegedUser(Executable test)
            throws Throwable
    {
        FileSystemUser libc = LibraryLoader.create(FileSystemUser.class).load("c");
        if (libc.geteuid() != 0) {
            test.execute();
            return;
        }
        int previous = libc.setfsuid(NOBODY);
        try {
            // setfsuid(2) answers with the previous user, also when it fails: ask again to see
            CiAssumptions.assumeAvailable(libc.setfsuid(NOBODY) == NOBODY, "setfsuid(2) refused: cannot check permissions as root");
            test.execute();
        }
        finally {
            libc.setfsuid(previous);
        }
    }
}
