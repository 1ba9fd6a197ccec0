package dev.jloop.testkit;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.IovecIter;
import dev.jloop.iter.KvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Checks of a backend over a real file, beyond {@link AbstractBackingFileTest}: bounce and
 * read-modify-write at block boundaries under O_DIRECT, heap and direct iterators, end of file,
 * read-only, punch hole, extents, open failures, descriptor leaks. Operations go through an
 * {@link AioKernel}, as in a device.
 */
public abstract class AbstractFileBackendTest
{
    protected static final int BLOCK = 4096;

    protected Path dir;
    protected AioKernel aio;
    protected PagePool pool;

    protected abstract BackendFactory factory();

    protected abstract boolean direct();

    @BeforeEach
    public void setUp()
            throws IOException
    {
        // under target/: the build's file system has O_DIRECT, punch hole and SEEK_DATA; /tmp may not
        Path target = Path.of("target", "tmp").toAbsolutePath();
        Files.createDirectories(target);
        dir = Files.createTempDirectory(target, getClass().getSimpleName());
        aio = new AioKernel();
        pool = new PagePool(8 << 20);
    }

    @AfterEach
    public void tearDown()
            throws IOException
    {
        assertEquals(0, pool.usedBytes(), "leaked pages");
        assertEquals(0, aio.allocated(), "leaked kiocbs");
        pool.close();
        try (var files = Files.walk(dir)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    protected BackingFile open(Path file, boolean readOnly)
            throws IOException
    {
        return factory().open(new BackendConfig(file, readOnly, direct(), 8, Map.of()));
    }

    protected Path file(int size, long seed)
            throws IOException
    {
        byte[] data = new byte[size];
        new Random(seed).nextBytes(data);
        return Files.write(dir.resolve("disk-" + seed + ".img"), data);
    }

    /** Submits one operation and waits for its result. */
    protected long submit(Kiocb.Op op, BackingFile file, IovIter iter, long pos)
    {
        CompletableFuture<Long> done = new CompletableFuture<>();
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(op, file, iter, pos, 0).initCallback((k, res) -> done.complete(res), null);
        aio.submit(kiocb);
        long res = done.join();
        aio.free(kiocb);
        return res;
    }

    protected long fallocate(BackingFile file, int mode, long offset, long length)
    {
        CompletableFuture<Long> done = new CompletableFuture<>();
        Kiocb kiocb = aio.alloc();
        kiocb.initFallocate(file, mode, offset, length).initCallback((k, res) -> done.complete(res), null);
        aio.submit(kiocb);
        long res = done.join();
        aio.free(kiocb);
        return res;
    }

    protected long fsync(BackingFile file, boolean datasync)
    {
        CompletableFuture<Long> done = new CompletableFuture<>();
        Kiocb kiocb = aio.alloc();
        kiocb.initFsync(file, datasync).initCallback((k, res) -> done.complete(res), null);
        aio.submit(kiocb);
        long res = done.join();
        aio.free(kiocb);
        return res;
    }

    /** Reads {@code length} bytes at {@code pos} through a heap iterator split into uneven segments. */
    protected byte[] readHeap(BackingFile file, long pos, int length)
    {
        byte[] a = new byte[length / 3];
        byte[] b = new byte[length - a.length];
        IovecIter iter = IovecIter.of(Direction.DEST, a, b);
        assertEquals(length, submit(Kiocb.Op.READ, file, iter, pos));
        assertEquals(0, iter.count());
        byte[] out = Arrays.copyOf(a, length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    public void testHeapWritesAtOddOffsetsMatchModel()
            throws IOException
    {
        int size = 256 * 1024;
        Path path = file(size, 1);
        byte[] model = Files.readAllBytes(path);
        Random random = new Random(2);
        try (BackingFile file = open(path, false)) {
            // around block boundaries, inside one block, many blocks, more than a bounce buffer
            long[][] writes = {{0, 1}, {4095, 2}, {4096, 4096}, {100, 50}, {8191, 8194}, {12288, 5000}, {3, 200_000}, {size - 7, 7}};
            for (long[] w : writes) {
                byte[] data = new byte[(int) w[1]];
                random.nextBytes(data);
                assertEquals(data.length, submit(Kiocb.Op.WRITE, file, IovecIter.of(Direction.SOURCE, data), w[0]));
                System.arraycopy(data, 0, model, (int) w[0], data.length);
                assertArrayEquals(Arrays.copyOfRange(model, (int) w[0], (int) (w[0] + w[1])), readHeap(file, w[0], data.length));
            }
            assertEquals(size, file.size());
            assertArrayEquals(model, readHeap(file, 0, size));
        }
        assertArrayEquals(model, Files.readAllBytes(path));
    }

    @Test
    public void testUnalignedDirectBuffersMatchModel()
            throws IOException
    {
        int size = 64 * 1024;
        Path path = file(size, 3);
        byte[] model = Files.readAllBytes(path);
        try (BackingFile file = open(path, false)) {
            // a direct buffer whose position is neither block aligned nor a block long
            ByteBuffer buffer = ByteBuffer.allocateDirect(3 * BLOCK + 10);
            for (int i = 0; i < buffer.capacity(); i++) {
                buffer.put(i, (byte) (i * 7));
            }
            buffer.position(10);
            assertEquals(3 * BLOCK, submit(Kiocb.Op.WRITE, file, KvecIter.of(Direction.SOURCE, buffer), 2 * BLOCK));
            for (int i = 0; i < 3 * BLOCK; i++) {
                model[2 * BLOCK + i] = (byte) ((i + 10) * 7);
            }
            ByteBuffer in = ByteBuffer.allocateDirect(size + 1);
            in.position(1);
            KvecIter iter = KvecIter.of(Direction.DEST, in);
            assertEquals(size, submit(Kiocb.Op.READ, file, iter, 0));
            byte[] back = new byte[size];
            in.get(1, back);
            assertArrayEquals(model, back);
        }
    }

    @Test
    public void testAlignedPagesGoStraight()
            throws Exception
    {
        int size = 1 << 20;
        Path path = file(size, 4);
        byte[] model = Files.readAllBytes(path);
        Page[] pages = new Page[PagePool.maxPages(512 * 1024)];
        int n = pool.allocate(512 * 1024, pages);
        try (BackingFile file = open(path, false)) {
            BvecIter iter = new BvecIter().reset(Direction.DEST, pages, n, 512 * 1024);
            assertEquals(512 * 1024, submit(Kiocb.Op.READ, file, iter, 256 * 1024));
            assertEquals(0, iter.count());
            byte[] got = new byte[512 * 1024];
            new BvecIter().reset(Direction.SOURCE, pages, n, got.length).copyFromIter(got, 0, got.length);
            assertArrayEquals(Arrays.copyOfRange(model, 256 * 1024, 768 * 1024), got);

            // write them back one block later
            iter = new BvecIter().reset(Direction.SOURCE, pages, n, 512 * 1024);
            assertEquals(512 * 1024, submit(Kiocb.Op.WRITE, file, iter, 256 * 1024 + BLOCK));
            System.arraycopy(got, 0, model, 256 * 1024 + BLOCK, got.length);
            assertEquals(0, fsync(file, true));
            assertEquals(0, fsync(file, false));
        }
        finally {
            pool.free(pages, n);
        }
        assertArrayEquals(model, Files.readAllBytes(path));
    }

    @Test
    public void testReadsStopAtEndOfFile()
            throws IOException
    {
        Path path = file(10_000, 5);
        byte[] model = Files.readAllBytes(path);
        try (BackingFile file = open(path, false)) {
            byte[] buffer = new byte[8192];
            IovecIter iter = IovecIter.of(Direction.DEST, buffer);
            assertEquals(10_000 - 8192, submit(Kiocb.Op.READ, file, iter, 8192));
            assertEquals(8192 - (10_000 - 8192), iter.count());
            assertArrayEquals(Arrays.copyOfRange(model, 8192, 10_000), Arrays.copyOf(buffer, 10_000 - 8192));

            // unaligned start, tail past end of file
            iter = IovecIter.of(Direction.DEST, new byte[5000]);
            assertEquals(10_000 - 7000, submit(Kiocb.Op.READ, file, iter, 7000));

            ByteBuffer aligned = DirectMemory.allocateAligned(4 * BLOCK);
            KvecIter direct = KvecIter.of(Direction.DEST, aligned);
            assertEquals(10_000 - 2 * BLOCK, submit(Kiocb.Op.READ, file, direct, 2 * BLOCK));
            byte[] got = new byte[10_000 - 2 * BLOCK];
            aligned.get(0, got);
            assertArrayEquals(Arrays.copyOfRange(model, 2 * BLOCK, 10_000), got);

            assertEquals(0, submit(Kiocb.Op.READ, file, IovecIter.of(Direction.DEST, new byte[100]), 10_000));
            assertEquals(0, submit(Kiocb.Op.READ, file, KvecIter.of(Direction.DEST, DirectMemory.allocateAligned(BLOCK)), 12 * BLOCK));
        }
    }

    @Test
    public void testWritePastEndOfFileSetsExactSize()
            throws IOException
    {
        Path path = file(5000, 6);
        byte[] model = Arrays.copyOf(Files.readAllBytes(path), 9000);
        try (BackingFile file = open(path, false)) {
            byte[] data = new byte[3000];
            Arrays.fill(data, (byte) 9);
            assertEquals(3000, submit(Kiocb.Op.WRITE, file, IovecIter.of(Direction.SOURCE, data), 6000));
            System.arraycopy(data, 0, model, 6000, 3000);
            assertEquals(9000, file.size());
        }
        assertArrayEquals(model, Files.readAllBytes(path));
    }

    @Test
    public void testReadOnlyRefusesWritesWithEperm()
            throws IOException
    {
        Path path = file(16 * BLOCK, 7);
        byte[] model = Files.readAllBytes(path);
        try (BackingFile file = open(path, true)) {
            assertTrue(file.capabilities().readOnly());
            assertEquals(-Errno.EPERM, submit(Kiocb.Op.WRITE, file, IovecIter.of(Direction.SOURCE, new byte[BLOCK]), 0));
            assertEquals(-Errno.EPERM, fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, BLOCK));
            assertArrayEquals(Arrays.copyOf(model, 100), readHeap(file, 0, 100));
            assertEquals(0, fsync(file, true));
        }
        assertArrayEquals(model, Files.readAllBytes(path));
    }

    @Test
    public void testPunchHoleKeepsSizeReadsZerosAndShowsInExtents()
            throws IOException
    {
        int size = 1 << 20;
        Path path = file(size, 8);
        byte[] model = Files.readAllBytes(path);
        try (BackingFile file = open(path, false)) {
            assertEquals(0, fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 128 * 1024, 256 * 1024));
            Arrays.fill(model, 128 * 1024, 384 * 1024, (byte) 0);
            // a partial block is zeroed in place
            assertEquals(0, fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 1000, 100));
            Arrays.fill(model, 1000, 1100, (byte) 0);
            assertEquals(size, file.size());
            assertArrayEquals(model, readHeap(file, 0, size));

            List<long[]> extents = new ArrayList<>();
            assertEquals(0, file.extents(0, size, (offset, length, type) -> extents.add(new long[] {offset, length, type})));
            assertEquals(3, extents.size());
            assertArrayEquals(new long[] {0, 128 * 1024, ExtentSink.DATA}, extents.get(0));
            assertArrayEquals(new long[] {128 * 1024, 256 * 1024, ExtentSink.HOLE | ExtentSink.ZERO}, extents.get(1));
            assertArrayEquals(new long[] {384 * 1024, size - 384 * 1024, ExtentSink.DATA}, extents.get(2));
        }
        assertArrayEquals(model, Files.readAllBytes(path));
    }

    @Test
    public void testCapabilities()
            throws IOException
    {
        try (BackingFile file = open(file(BLOCK, 9), false)) {
            var capabilities = file.capabilities();
            assertEquals(direct() ? BLOCK : 1, capabilities.logicalBlockSize());
            assertTrue(capabilities.flush() && capabilities.trim() && capabilities.zero() && capabilities.extents() && capabilities.multiConn());
            assertTrue(!capabilities.readOnly());
            // read-ahead warms the page cache, which O_DIRECT does not use
            assertEquals(!direct(), capabilities.cache());
            assertEquals(0, file.cache(0, BLOCK * 9L), "read-ahead reaching past the end");
            assertEquals(0, file.cache(BLOCK, 1), "read-ahead of a byte");
        }
        try (BackingFile readOnly = open(file(BLOCK, 2), true)) {
            assertEquals(0, readOnly.cache(0, BLOCK), "read-ahead on a read-only file");
        }
    }

    @Test
    public void testOpenFailuresNameTheProblem()
            throws IOException
    {
        Path missing = dir.resolve("missing.img");
        IOException e = assertThrows(NoSuchFileException.class, () -> open(missing, false));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("No such file"), e.getMessage());
        e = assertThrows(FileSystemException.class, () -> open(dir, true));
        assertTrue(e.getMessage().contains("directory"), e.getMessage());
        Path locked = file(BLOCK, 10);
        Files.setPosixFilePermissions(locked, java.util.Set.of());
        if (!Files.isReadable(locked)) {
            assertThrows(AccessDeniedException.class, () -> open(locked, false));
        }
    }

    @Test
    public void testCloseReleasesTheDescriptors()
            throws IOException
    {
        Path path = file(BLOCK, 11);
        for (int i = 0; i < 5; i++) {
            BackingFile file = open(path, false);
            assertEquals(BLOCK, readHeap(file, 0, BLOCK).length);
            assertTrue(OpenFiles.descriptorsOf(path) > 0, "the open file holds a descriptor");
            file.close();
            assertEquals(0, OpenFiles.descriptorsOf(path), "close() released every descriptor");
        }
    }

}
