package dev.jloop.testkit;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.IovIter.Kind;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.IovecIter;
import dev.jloop.iter.KvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Queue;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The conformance suite of the {@link BackingFile} contract: every backend runs it, and so can a
 * third party's. A subclass supplies the backend's {@link #factory()}; the O_DIRECT variant is a
 * second subclass that also returns true from {@link #direct()} (the shape of Netty's testsuite and
 * Trino's {@code BaseConnectorTest}).
 *
 * <p>What a subclass provides:
 * <ul>
 * <li>{@link #factory()}, required: the backend under test;</li>
 * <li>{@link #direct()}, {@link #options()} and {@link #queueDepth()}: what goes into the
 *     {@link BackendConfig} of every file the suite opens;</li>
 * <li>{@link #createFile(String, long, NavigableMap)} and {@link #readFile(Path)}, when the backend
 *     does not keep the device's bytes in the file as they are (it encrypts, compresses, adds a
 *     header): the suite makes every file it opens through the first, and looks at what a closed
 *     file holds only through the second;</li>
 * <li>{@link #expectedCapabilities()}, to pin what the backend declares;</li>
 * <li>{@link #plainFile()}, {@link #holesFromFileSystem()} and {@link #keepsWritesAfterClose()},
 *     which say what else may be checked.</li>
 * </ul>
 *
 * <p>Every backend must pass the tests of the contract itself: reads and writes through every kind of
 * iterator, aligned or not; end of file; read-only files; many requests in flight; completions that
 * submit again; open failures that name the file; releasing the file on close. The others depend on
 * what the backend declares, and are skipped, with the reason, where it declares otherwise:
 * <ul>
 * <li>{@link Capabilities#trim()}: {@link #punchHoleKeepsSizeAndReadsZeros()};</li>
 * <li>{@link Capabilities#zero()}: {@link #zeroRangeReadsZeros()};</li>
 * <li>{@link Capabilities#extents()}: the hole checks of {@link #extentsOfSparseFile()} and of
 *     {@link #punchHoleKeepsSizeAndReadsZeros()} (the rest of them runs for every backend);</li>
 * <li>{@link Capabilities#cache()}: {@link #cacheAcceptsAnyRange()};</li>
 * <li>{@link #plainFile()}: {@link #writePastEndOfFileSetsExactSize()};</li>
 * <li>{@link #expectedCapabilities()}: {@link #declaresTheExpectedCapabilities()}.</li>
 * </ul>
 * What the backend declares also decides which results some tests accept: {@code -EOPNOTSUPP} from
 * fsync without {@link Capabilities#flush()}, from zeroing without {@link Capabilities#zero()}, from
 * punching a read-only file without {@link Capabilities#trim()}.
 *
 * <p>Files are created under {@code target/} (a real file system with O_DIRECT, sparse files and
 * punch-hole, unlike a tmpfs {@code /tmp}) and opened through the factory. Every operation goes
 * through an {@link AioKernel}: alloc, init, submit, completion. After each test nothing may be left
 * in flight, no kiocb allocated and no page of the {@link PagePool} in use.
 */
public abstract class AbstractBackingFileTest
{
    protected static final int BLOCK = 4096;
    private static final long TIMEOUT_SECONDS = 60;
    private static final Set<String> FILE_SYSTEMS_WITH_HOLES = Set.of("ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs");

    @TempDir(factory = TargetTempDirFactory.class)
    protected Path dir;

    protected AioKernel aio;
    protected PagePool pool;
    /** Contract violations seen on backend threads, where an assertion would be lost. */
    private final Queue<String> violations = new ConcurrentLinkedQueue<>();

    /** The backend under test. */
    protected abstract BackendFactory factory();

    /** Whether files are opened with O_DIRECT. */
    protected boolean direct()
    {
        return false;
    }

    /** Backend options passed in the {@link BackendConfig}. */
    protected Map<String, String> options()
    {
        return Map.of();
    }

    protected int queueDepth()
    {
        return 64;
    }

    /**
     * Every capability the backend declares for a file opened read-write with this suite's config, or
     * {@code null} (the default) to accept whatever it declares. Pinning them makes
     * {@link #declaresTheExpectedCapabilities()} fail when a backend stops declaring one, where the
     * tests gated on that capability would only be skipped.
     */
    protected Capabilities expectedCapabilities()
    {
        return null;
    }

    /**
     * Whether the backend serves the file at the path as it is and holds it open, as the sync, nio and
     * io_uring backends do. Such a file grows when written past its end
     * ({@link #writePastEndOfFileSetsExactSize()}), and while open it holds a descriptor on the path
     * ({@link #closeReleasesTheFile()}). False by default.
     */
    protected boolean plainFile()
    {
        return false;
    }

    /**
     * Whether what was written is in the file after close, as the backend reads it on the next open
     * (true by default). A backend that keeps writes elsewhere while it is open and drops them at
     * close (a filter's temporary overlay) returns false: the suite then leaves out its checks of the
     * closed file, and checks all the rest.
     */
    protected boolean keepsWritesAfterClose()
    {
        return true;
    }

    /**
     * Whether the holes the backend reports are those of the file system under {@link #dir} (through
     * SEEK_HOLE, as for the file backends) rather than holes of its own. Then the hole checks need a
     * file system known to report holes: elsewhere they are skipped, and fail on CI. True by default.
     */
    protected boolean holesFromFileSystem()
    {
        return true;
    }

    @BeforeEach
    public final void setUpAioKernel()
    {
        aio = new AioKernel();
        pool = new PagePool(64 << 20);
    }

    @AfterEach
    public final void checkNothingLeaked()
    {
        try {
            assertEquals(List.of(), List.copyOf(violations), "contract violations on backend threads");
            assertEquals(0, aio.inFlight(), "kiocbs still in flight");
            assertEquals(0, aio.allocated(), "kiocbs allocated and not freed");
            assertEquals(0, pool.usedBytes(), "pages not returned to the pool");
        }
        finally {
            pool.close();
        }
    }

    // ---------------------------------------------------------------- tests

    @Test
    public void capabilitiesAndSize()
            throws IOException
    {
        Path path = createFile("caps", randomBytes(new Random(1), 3 * BLOCK + 17));
        try (BackingFile file = open(path, false)) {
            Capabilities capabilities = file.capabilities();
            assertFalse(capabilities.readOnly(), "a file opened read-write declares readOnly: " + capabilities);
            assertEquals(1, Integer.bitCount(capabilities.logicalBlockSize()), "the logical block size is a power of two: " + capabilities);
            assertEquals(3 * BLOCK + 17, file.size(), "size of a file of " + (3 * BLOCK + 17) + " bytes");
        }
    }

    @Test
    public void declaresTheExpectedCapabilities()
            throws IOException
    {
        Capabilities expected = expectedCapabilities();
        assumeTrue(expected != null, "the subclass pins no capabilities (expectedCapabilities())");
        try (BackingFile file = open(createFile("expected", new byte[BLOCK]), false)) {
            assertEquals(expected.toString(), file.capabilities().toString(), "capabilities declared for a file opened read-write");
        }
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    public void writeAndReadAligned(Kind kind)
            throws Exception
    {
        writeAndRead(kind, true, 11);
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    public void writeAndReadUnaligned(Kind kind)
            throws Exception
    {
        writeAndRead(kind, false, 12);
    }

    private void writeAndRead(Kind kind, boolean aligned, long seed)
            throws Exception
    {
        Random random = new Random(seed);
        int size = 1 << 20;
        byte[] model = randomBytes(random, size);
        Path path = createFile("rw", model.clone());
        try (BackingFile file = open(path, false)) {
            byte[] initial = readFully(file, Kind.IOVEC, 0, size, false);
            assertArrayEquals(model, initial, "initial content: the file as created");
            for (int i = 0; i < 12; i++) {
                long offset;
                int length;
                if (aligned) {
                    offset = (long) random.nextInt(size / BLOCK) * BLOCK;
                    length = BLOCK * (1 + random.nextInt(24));
                }
                else {
                    offset = random.nextInt(size);
                    length = 1 + random.nextInt(70_000);
                }
                length = (int) Math.min(length, size - offset);
                byte[] data = randomBytes(random, length);
                writeFully(file, kind, offset, data, aligned);
                System.arraycopy(data, 0, model, (int) offset, length);
                assertArrayEquals(data, readFully(file, kind, offset, length, aligned),
                        "read back " + length + " bytes at " + offset + " through " + kind);
                // Around the write: bytes before and after it are not disturbed.
                long around = Math.max(0, offset - 5000);
                int aroundLength = (int) Math.min(size - around, length + 10000L);
                assertArrayEquals(Arrays.copyOfRange(model, (int) around, (int) around + aroundLength),
                        readFully(file, kind, around, aroundLength, false), "around the write at " + offset);
            }
            assertArrayEquals(model, readFully(file, Kind.IOVEC, 0, size, false), "whole file after the writes");
            long res = fsync(file, false);
            assertTrue(res == 0 || (res == -Errno.EOPNOTSUPP && !file.capabilities().flush()), "fsync: " + Errno.name(res));
        }
        assertFileHolds(model, path, "file content after close: the writes did not all reach the file");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    public void readAtAndPastEndOfFile(Kind kind)
            throws Exception
    {
        int size = 3 * BLOCK + 1000;
        byte[] content = randomBytes(new Random(2), size);
        try (BackingFile file = open(createFile("eof", content), false)) {
            try (IoBuf buf = new IoBuf(kind, BLOCK, true, new Random(3))) {
                IovIter iter = buf.iter(Direction.DEST);
                assertEquals(0, submitRw(Kiocb.Op.READ, file, iter, size), "read at end of file");
                assertEquals(BLOCK, iter.count(), "a read of nothing does not advance the iterator");
                assertEquals(0, submitRw(Kiocb.Op.READ, file, buf.iter(Direction.DEST), size + 3L * BLOCK), "read past end of file");
            }
            // Aligned read of the last, partial block: short.
            try (IoBuf buf = new IoBuf(kind, BLOCK, true, new Random(4))) {
                assertEquals(1000, readFully(file, buf, 3 * BLOCK), "bytes read by an aligned read of the last, partial block");
                assertArrayEquals(Arrays.copyOfRange(content, 3 * BLOCK, size), Arrays.copyOf(buf.get(), 1000), "the last, partial block");
            }
            // Unaligned read across the end.
            try (IoBuf buf = new IoBuf(kind, 3000, false, new Random(5))) {
                assertEquals(100, readFully(file, buf, size - 100), "bytes read by an unaligned read across the end");
                assertArrayEquals(Arrays.copyOfRange(content, size - 100, size), Arrays.copyOf(buf.get(), 100), "the last 100 bytes");
            }
        }
    }

    /** Heap writes around block boundaries, inside one block, over many blocks and over more than a bounce buffer. */
    @Test
    public void writesAroundBlockBoundariesMatchModel()
            throws Exception
    {
        int size = 256 * 1024;
        byte[] model = randomBytes(new Random(16), size);
        Path path = createFile("boundaries", model.clone());
        Random random = new Random(2);
        try (BackingFile file = open(path, false)) {
            long[][] writes = {{0, 1}, {4095, 2}, {4096, 4096}, {100, 50}, {8191, 8194}, {12288, 5000}, {3, 200_000}, {size - 7, 7}};
            for (long[] write : writes) {
                byte[] data = randomBytes(random, (int) write[1]);
                writeFully(file, Kind.IOVEC, write[0], data, false);
                System.arraycopy(data, 0, model, (int) write[0], data.length);
                assertArrayEquals(data, readFully(file, Kind.IOVEC, write[0], data.length, false),
                        "read back " + data.length + " bytes written at " + write[0]);
            }
            assertEquals(size, file.size(), "writes inside the file keep its size");
            assertArrayEquals(model, readFully(file, Kind.IOVEC, 0, size, false), "whole file after the writes");
        }
        assertFileHolds(model, path, "file content after close: the writes did not all reach the file");
    }

    /** A direct buffer whose position is neither block aligned nor a block long. */
    @Test
    public void unalignedDirectBuffersMatchModel()
            throws Exception
    {
        int size = 64 * 1024;
        byte[] model = randomBytes(new Random(17), size);
        Path path = createFile("unaligned-direct", model.clone());
        try (BackingFile file = open(path, false)) {
            ByteBuffer buffer = ByteBuffer.allocateDirect(3 * BLOCK + 10);
            for (int i = 0; i < buffer.capacity(); i++) {
                buffer.put(i, (byte) (i * 7));
            }
            buffer.position(10);
            assertEquals(3 * BLOCK, transferFully(Kiocb.Op.WRITE, file, KvecIter.of(Direction.SOURCE, buffer), 2 * BLOCK),
                    "bytes written from a direct buffer at position 10");
            for (int i = 0; i < 3 * BLOCK; i++) {
                model[2 * BLOCK + i] = (byte) ((i + 10) * 7);
            }
            ByteBuffer in = ByteBuffer.allocateDirect(size + 1);
            in.position(1);
            assertEquals(size, transferFully(Kiocb.Op.READ, file, KvecIter.of(Direction.DEST, in), 0),
                    "bytes read into a direct buffer at position 1");
            byte[] back = new byte[size];
            in.get(1, back);
            assertArrayEquals(model, back, "whole file read into a direct buffer at position 1, after writing " + 3 * BLOCK + " bytes at " + 2 * BLOCK);
        }
        assertFileHolds(model, path, "file content after close: the write did not reach the file");
    }

    /** Page-pool pages, as the frontends hand them over: a read of many pages, written back one block further on. */
    @Test
    public void alignedPagesReadAndWriteBack()
            throws Exception
    {
        int size = 1 << 20;
        int length = 512 * 1024;
        long at = 256 * 1024;
        byte[] model = randomBytes(new Random(18), size);
        Path path = createFile("pages", model.clone());
        Page[] pages = new Page[PagePool.maxPages(length)];
        int n = pool.allocate(length, pages);
        try (BackingFile file = open(path, false)) {
            assertEquals(length, transferFully(Kiocb.Op.READ, file, new BvecIter().reset(Direction.DEST, pages, n, length), at),
                    "bytes read into pages at " + at);
            byte[] got = new byte[length];
            new BvecIter().reset(Direction.SOURCE, pages, n, length).copyFromIter(got, 0, length);
            assertArrayEquals(Arrays.copyOfRange(model, (int) at, (int) at + length), got, "pages read at " + at);

            assertEquals(length, transferFully(Kiocb.Op.WRITE, file, new BvecIter().reset(Direction.SOURCE, pages, n, length), at + BLOCK),
                    "bytes written from pages at " + (at + BLOCK));
            System.arraycopy(got, 0, model, (int) at + BLOCK, length);
            boolean flush = file.capabilities().flush();
            long datasync = fsync(file, true);
            assertTrue(datasync == 0 || (datasync == -Errno.EOPNOTSUPP && !flush), "fdatasync: " + Errno.name(datasync));
            long sync = fsync(file, false);
            assertTrue(sync == 0 || (sync == -Errno.EOPNOTSUPP && !flush), "fsync: " + Errno.name(sync));
            assertArrayEquals(model, readFully(file, Kind.IOVEC, 0, size, false), "whole file after writing the pages back at " + (at + BLOCK));
        }
        finally {
            pool.free(pages, n);
        }
        assertFileHolds(model, path, "file content after close: the write from pages did not reach the file");
    }

    @Test
    public void fsyncBothModes()
            throws Exception
    {
        byte[] content = randomBytes(new Random(6), 64 * 1024);
        Path path = createFile("fsync", new byte[content.length]);
        try (BackingFile file = open(path, false)) {
            writeFully(file, Kind.BVEC, 0, content, true);
            long res = fsync(file, false);
            long datasync = fsync(file, true);
            if (file.capabilities().flush()) {
                assertEquals(0, res, "fsync: " + Errno.name(res));
                assertEquals(0, datasync, "fdatasync: " + Errno.name(datasync));
            }
            else {
                assertTrue(res == 0 || res == -Errno.EOPNOTSUPP, "fsync: " + Errno.name(res));
                assertTrue(datasync == 0 || datasync == -Errno.EOPNOTSUPP, "fdatasync: " + Errno.name(datasync));
            }
            assertArrayEquals(content, readFully(file, Kind.KVEC, 0, content.length, true), "read after write and fsync");
        }
        assertFileHolds(content, path, "file content after close: the write did not reach the file");
    }

    @Test
    public void punchHoleKeepsSizeAndReadsZeros()
            throws Exception
    {
        int size = 1 << 20;
        byte[] model = nonZeroBytes(new Random(7), size);
        Path path = createFile("punch", model.clone());
        List<long[]> extents = null;
        try (BackingFile file = open(path, false)) {
            Capabilities capabilities = file.capabilities();
            assumeTrue(capabilities.trim(), "the backend declares no trim (punch hole): " + capabilities);
            long res = fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 256 * 1024, 128 * 1024);
            assumeFileSystemCan(res, "punch holes");
            assertEquals(0, res, "punch hole: " + Errno.name(res) + " with " + capabilities);
            Arrays.fill(model, 256 * 1024, 384 * 1024, (byte) 0);
            res = fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 700_001, 10_000);
            assertEquals(0, res, "unaligned punch hole: " + Errno.name(res));
            Arrays.fill(model, 700_001, 710_001, (byte) 0);
            // Punching past the end keeps the size too.
            res = fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, size - 2 * BLOCK, 8 * BLOCK);
            assertEquals(0, res, "punch across the end: " + Errno.name(res));
            Arrays.fill(model, size - 2 * BLOCK, size, (byte) 0);

            assertEquals(size, file.size(), "punching keeps the size");
            assertArrayEquals(model, readFully(file, Kind.BVEC, 0, size, true), "content after punching: zeros where punched, the rest as it was");
            if (capabilities.extents()) {
                extents = extents(file, 0, size);
                checkExtents(extents, 0, size);
                assertData(extents, 0, 256 * 1024);
            }
        }
        assertFileHolds(model, path, "file content after close: the punched ranges did not reach the file as zeros");
        if (extents != null) {
            assumeHolesReported();
            assertHole(extents, 256 * 1024, 128 * 1024);
        }
    }

    @Test
    public void zeroRangeReadsZeros()
            throws Exception
    {
        int size = 1 << 20;
        byte[] model = nonZeroBytes(new Random(8), size);
        Path path = createFile("zero", model.clone());
        try (BackingFile file = open(path, false)) {
            Capabilities capabilities = file.capabilities();
            assumeTrue(capabilities.zero(), "the backend declares no zero (zero range): " + capabilities);
            long res = fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 64 * 1024, 64 * 1024);
            assumeFileSystemCan(res, "zero ranges");
            assertEquals(0, res, "zero range: " + Errno.name(res) + " with " + capabilities);
            Arrays.fill(model, 64 * 1024, 128 * 1024, (byte) 0);
            res = fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 500_003, 7777);
            assertEquals(0, res, "unaligned zero range: " + Errno.name(res));
            Arrays.fill(model, 500_003, 507_780, (byte) 0);
            assertEquals(size, file.size(), "zeroing keeps the size");
            assertArrayEquals(model, readFully(file, Kind.IOVEC, 0, size, false), "content after zeroing: zeros where zeroed, the rest as it was");
            checkExtents(extents(file, 64 * 1024, 64 * 1024), 64 * 1024, 64 * 1024);
        }
        assertFileHolds(model, path, "file content after close: the zeroed ranges did not reach the file as zeros");
    }

    @Test
    public void extentsOfSparseFile()
            throws Exception
    {
        long size = 8 << 20;
        Random random = new Random(9);
        long[][] data = {{1 << 20, 64 * 1024}, {(5 << 20) + BLOCK, BLOCK}, {size - BLOCK, BLOCK}};
        NavigableMap<Long, byte[]> ranges = new TreeMap<>();
        for (long[] range : data) {
            ranges.put(range[0], nonZeroBytes(random, (int) range[1]));
        }
        Path path = createFile("sparse", size, ranges);
        List<long[]> all;
        boolean reportsHoles;
        try (BackingFile file = open(path, false)) {
            assertEquals(size, file.size(), "size of a sparse file of " + size + " bytes");
            reportsHoles = file.capabilities().extents();
            all = extents(file, 0, size);
            checkExtents(all, 0, size);
            for (long[] range : data) {
                assertData(all, range[0], range[1]);
            }

            // A range starting inside an extent starts the report there.
            long from = (1 << 20) - 1000;
            List<long[]> part = extents(file, from, 2000);
            checkExtents(part, from, 2000);
            assertData(part, 1 << 20, 1000);

            // The sink stops the report.
            AtomicInteger calls = new AtomicInteger();
            long res = file.extents(0, size, (offset, length, type) -> {
                calls.incrementAndGet();
                return false;
            });
            assertEquals(0, res, "extents stopped by the sink: " + Errno.name(res));
            assertEquals(1, calls.get(), "extents continued after the sink returned false");
        }
        if (reportsHoles) {
            assumeHolesReported();
            assertHole(all, 0, 1 << 20);
            assertHole(all, (1 << 20) + 64 * 1024, (4 << 20) - 64 * 1024 + BLOCK);
            assertHole(all, (5 << 20) + 2 * BLOCK, size - BLOCK - (5 << 20) - 2 * BLOCK);
        }
    }

    @Test
    public void cacheAcceptsAnyRange()
            throws Exception
    {
        try (BackingFile file = open(createFile("cache", randomBytes(new Random(20), BLOCK)), false)) {
            assumeTrue(file.capabilities().cache(), "the backend declares no cache (read-ahead): " + file.capabilities());
            long res = file.cache(0, BLOCK * 9L);
            assertEquals(0, res, "read-ahead reaching past the end: " + Errno.name(res));
            res = file.cache(BLOCK - 1, 1);
            assertEquals(0, res, "read-ahead of the last byte: " + Errno.name(res));
        }
        try (BackingFile readOnly = open(createFile("cache-ro", randomBytes(new Random(21), BLOCK)), true)) {
            long res = readOnly.cache(0, BLOCK);
            assertEquals(0, res, "read-ahead on a read-only file: " + Errno.name(res));
        }
    }

    @Test
    public void writePastEndOfFileSetsExactSize()
            throws Exception
    {
        assumeTrue(plainFile(), "the backend does not serve the file as it is (plainFile()): its size need not follow writes");
        byte[] initial = randomBytes(new Random(19), 5000);
        Path path = createFile("grow", initial);
        byte[] model = Arrays.copyOf(initial, 9000);
        try (BackingFile file = open(path, false)) {
            byte[] data = new byte[3000];
            Arrays.fill(data, (byte) 9);
            writeFully(file, Kind.IOVEC, 6000, data, false);
            System.arraycopy(data, 0, model, 6000, 3000);
            assertEquals(9000, file.size(), "size after writing [6000, 9000) to a file of 5000 bytes");
        }
        assertFileHolds(model, path, "file content after close: the old content, zeros up to 6000, then the write");
    }

    @Test
    public void readOnlyFileRefusesWritesWithEperm()
            throws Exception
    {
        byte[] content = randomBytes(new Random(10), 256 * 1024);
        Path path = createFile("ro", content);
        try (BackingFile file = open(path, true)) {
            Capabilities capabilities = file.capabilities();
            assertTrue(capabilities.readOnly(), "read-only file must declare it: " + capabilities);
            for (Kind kind : Kind.values()) {
                try (IoBuf buf = new IoBuf(kind, BLOCK, true, new Random(11))) {
                    buf.put(randomBytes(new Random(12), BLOCK));
                    long res = submitRw(Kiocb.Op.WRITE, file, buf.iter(Direction.SOURCE), BLOCK);
                    assertEquals(-Errno.EPERM, res, "write to a read-only file through " + kind + ": " + Errno.name(res));
                }
            }
            long punch = fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, BLOCK);
            assertTrue(punch == -Errno.EPERM || (punch == -Errno.EOPNOTSUPP && !capabilities.trim()), "punch: " + Errno.name(punch));
            long zero = fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 0, BLOCK);
            assertTrue(zero == -Errno.EPERM || (zero == -Errno.EOPNOTSUPP && !capabilities.zero()), "zero range: " + Errno.name(zero));
            long sync = fsync(file, true);
            assertTrue(sync == 0 || (sync == -Errno.EOPNOTSUPP && !capabilities.flush()), "fdatasync of a read-only file: " + Errno.name(sync));
            assertArrayEquals(content, readFully(file, Kind.BVEC, 0, content.length, true), "whole read-only file");
            assertArrayEquals(Arrays.copyOfRange(content, 3, 10_003), readFully(file, Kind.KVEC, 3, 10_000, false), "10000 bytes at 3 of a read-only file");
        }
        assertArrayEquals(content, readFile(path), "a read-only file is not modified");
    }

    @Test
    public void openFailuresNameTheFile()
    {
        Path missing = dir.resolve("missing.img");
        IOException e = assertThrows(IOException.class, () -> open(missing, false), "opening a file that does not exist");
        assertTrue(String.valueOf(e.getMessage()).contains(missing.toString()), "the failure to open a missing file names it: " + e);
        assertFalse(Files.exists(missing), "opening a missing file created it");
        e = assertThrows(IOException.class, () -> open(dir, true), "opening a directory");
        assertTrue(String.valueOf(e.getMessage()).contains(dir.toString()), "the failure to open a directory names it: " + e);
    }

    @Test
    public void closeReleasesTheFile()
            throws Exception
    {
        Path path = createFile("close", randomBytes(new Random(13), 64 * 1024));
        for (int i = 0; i < 3; i++) {
            openReadClose(path);
        }
        assertEquals(0, OpenFiles.descriptorsOf(path), "file descriptors left open by close()");
    }

    private void openReadClose(Path path)
            throws Exception
    {
        try (BackingFile file = open(path, false)) {
            readFully(file, Kind.BVEC, 0, BLOCK, true);
            fsync(file, true);
            if (plainFile()) {
                // Else counting descriptors after close would check nothing.
                assertTrue(OpenFiles.descriptorsOf(path) > 0, "the open file holds no descriptor on " + path);
            }
        }
    }
    /**
     * Many reads and writes in flight at once, from several threads, at random (and overlapping)
     * ranges, checked against a model. Requests run in waves: within a wave everything is in flight
     * together, so a byte written by several requests of the wave may end with the value of any of
     * them, and a read may see the value from before the wave or of any write of the wave covering it.
     * Between waves every request has completed, so a later wave's write must win.
     */
    @Test
    public void manyOverlappingRequestsInFlight()
            throws Exception
    {
        int size = 4 << 20;
        int waves = 4;
        int perWave = 500;
        int threads = 4;
        Random random = new Random(14);
        byte[] initial = randomBytes(random, size);
        Path path = createFile("concurrent", initial);
        Model model = new Model(initial);
        ExecutorService submitters = Executors.newFixedThreadPool(threads);
        try (BackingFile file = open(path, false)) {
            for (int wave = 0; wave < waves; wave++) {
                List<Request> requests = new ArrayList<>();
                for (int i = 0; i < perWave; i++) {
                    boolean aligned = random.nextInt(3) != 0;
                    long offset = aligned ? (long) random.nextInt(size / BLOCK) * BLOCK : random.nextInt(size);
                    int length = aligned ? BLOCK * (1 + random.nextInt(8)) : 1 + random.nextInt(32 * 1024);
                    length = (int) Math.min(length, size - offset);
                    Kind kind = Kind.values()[random.nextInt(Kind.values().length)];
                    boolean write = random.nextBoolean();
                    byte[] data = write ? randomBytes(random, length) : null;
                    requests.add(new Request(write ? model.addWrite(offset, data) : -1, offset, length, kind, aligned, data, random.nextLong()));
                }
                CountDownLatch done = new CountDownLatch(perWave);
                List<Future<?>> submitted = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    List<Request> share = requests.subList(t * perWave / threads, (t + 1) * perWave / threads);
                    submitted.add(submitters.submit(() -> {
                        aio.plug(file);
                        try {
                            for (Request request : share) {
                                request.submit(file, done);
                            }
                        }
                        finally {
                            aio.unplug(file);
                        }
                        return null;
                    }));
                }
                for (Future<?> future : submitted) {
                    future.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
                }
                if (!done.await(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                    fail(done.getCount() + " requests of wave " + wave + " never completed");
                }
                try {
                    List<Request> writes = requests.stream().filter(r -> r.writer >= 0).toList();
                    for (Request request : requests) {
                        assertEquals(request.submissions, request.completions.get(), "completions of " + request);
                        assertEquals(0, request.error, "error on " + request + ": " + Errno.name(request.error));
                        assertEquals(request.length, request.transferred, "bytes transferred by " + request);
                        request.buf.assertGapsIntact();
                        if (request.writer < 0) {
                            model.checkRead(request.offset, request.buf.get(), writes);
                        }
                    }
                    model.applyWave(writes);
                }
                finally {
                    for (Request request : requests) {
                        request.buf.close();
                    }
                }
            }
            byte[] whole = readFully(file, Kind.IOVEC, 0, size, false);
            long exact = model.checkFinal(whole);
            // Guards the design of this test: most bytes must have one possible value.
            assertTrue(exact > size / 2, "too few bytes with a single possible value: " + exact);
        }
        finally {
            submitters.shutdownNow();
            assertTrue(submitters.awaitTermination(TIMEOUT_SECONDS, TimeUnit.SECONDS), "submitting threads still running " + TIMEOUT_SECONDS + " s after the test");
        }
    }

    private final class Request
    {
        final int writer;
        final long offset;
        final int length;
        final Kind kind;
        final boolean aligned;
        final byte[] data;
        final long seed;
        final AtomicInteger completions = new AtomicInteger();
        IoBuf buf;
        IovIter iter;
        BackingFile file;
        CountDownLatch done;
        int submissions;
        long transferred;
        long countBefore;
        long error;

        Request(int writer, long offset, int length, Kind kind, boolean aligned, byte[] data, long seed)
        {
            this.writer = writer;
            this.offset = offset;
            this.length = length;
            this.kind = kind;
            this.aligned = aligned;
            this.data = data;
            this.seed = seed;
        }

        void submit(BackingFile file, CountDownLatch done)
                throws InterruptedException
        {
            this.file = file;
            this.done = done;
            buf = new IoBuf(kind, length, aligned, new Random(seed));
            if (writer >= 0) {
                buf.put(data);
            }
            iter = buf.iter(writer >= 0 ? Direction.SOURCE : Direction.DEST);
            Kiocb kiocb = aio.alloc();
            kiocb.initRw(writer >= 0 ? Kiocb.Op.WRITE : Kiocb.Op.READ, file, iter, offset, 0)
                    .initCallback(Request::completed, this);
            countBefore = iter.count();
            submissions++;
            aio.submit(kiocb);
        }

        // Runs on a backend thread or in submit(): records violations instead of throwing.
        static void completed(Kiocb kiocb, long res)
        {
            Request request = (Request) kiocb.privateData();
            request.onCompletion(kiocb, res);
        }

        private void onCompletion(Kiocb kiocb, long res)
        {
            completions.incrementAndGet();
            if (res >= 0 && iter.count() != countBefore - res) {
                violations.add(this + ": result " + res + " but the iterator advanced by " + (countBefore - iter.count()));
            }
            if (res > 0 && iter.count() > 0) {
                // A short transfer: the contract lets the backend do less; resubmit the rest.
                transferred += res;
                kiocb.initRw(kiocb.op(), file, iter, offset + transferred, 0);
                countBefore = iter.count();
                submissions++;
                aio.submit(kiocb);
                return;
            }
            if (res < 0) {
                error = res;
            }
            else {
                transferred += res;
            }
            aio.free(kiocb);
            done.countDown();
        }

        @Override
        public String toString()
        {
            return (writer >= 0 ? "write " : "read ") + length + " bytes at " + offset + " through " + kind;
        }
    }

    /**
     * The completion rule, from the backend's side: when it completes a kiocb, the backend has given
     * back that operation's room and holds no lock its submission path takes. Here every completion
     * submits its chain's next operation at once (write, fdatasync, read back, zero, read back), with
     * as many chains as the declared {@link Capabilities#queueDepth()} (8 where none is declared)
     * always in flight: a backend that completes while it still holds the slot, or under a lock that
     * submission waits for, hangs here.
     */
    @Test
    public void completionsThatSubmitAgainUnderFullCapacityNeverHang()
            throws Exception
    {
        int maxChains = 256;
        Path path = createFile("chains", new byte[maxChains * BLOCK]);
        try (BackingFile file = open(path, false)) {
            Capabilities capabilities = file.capabilities();
            int chains = capabilities.threadModel() == ThreadModel.SERIALIZE_ALL_REQUESTS ? 1
                    : Math.min(maxChains, capabilities.queueDepth() > 0 ? capabilities.queueDepth() : 8);
            int rounds = 20;
            CountDownLatch finished = new CountDownLatch(chains);
            Chain[] all = new Chain[chains];
            for (int i = 0; i < chains; i++) {
                all[i] = new Chain(file, i, rounds, finished);
            }
            for (Chain chain : all) {
                chain.next();
            }
            if (!finished.await(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                fail(finished.getCount() + " of " + chains + " chains stopped: completions that submit again hung the backend");
            }
            for (Chain chain : all) {
                assertEquals(rounds, chain.round, "rounds of chain " + chain.index);
            }
        }
    }

    /** Per thread: submissions made by completions that ran inside a submission wait for it to return. */
    private final ThreadLocal<Trampoline> trampolines = ThreadLocal.withInitial(Trampoline::new);

    private static final class Trampoline
    {
        final java.util.ArrayDeque<Kiocb> pending = new java.util.ArrayDeque<>();
        boolean active;
    }

    private void submitFromAnyContext(Kiocb kiocb)
    {
        Trampoline t = trampolines.get();
        if (t.active) {
            t.pending.add(kiocb);
            return;
        }
        t.active = true;
        try {
            aio.submit(kiocb);
            Kiocb next;
            while ((next = t.pending.poll()) != null) {
                aio.submit(next);
            }
        }
        finally {
            t.active = false;
        }
    }

    /** One block's write, fdatasync, read back, zero, read back, {@code rounds} times, each step submitted by the last one's completion. */
    private final class Chain
            implements KiocbCompletion
    {
        private static final int WRITE = 0;
        private static final int SYNC = 1;
        private static final int READ = 2;
        private static final int ZERO = 3;
        private static final int READ_ZEROS = 4;

        final int index;
        final BackingFile file;
        final int rounds;
        final CountDownLatch finished;
        final ByteBuffer buffer = DirectMemory.allocateAligned(BLOCK);
        final Kiocb kiocb = aio.alloc();
        int step;
        int round;
        boolean zeroed;
        long done;

        Chain(BackingFile file, int index, int rounds, CountDownLatch finished)
        {
            this.file = file;
            this.index = index;
            this.rounds = rounds;
            this.finished = finished;
        }

        private byte pattern()
        {
            return (byte) (1 + index * 31 + round);
        }

        void next()
        {
            long pos = (long) index * BLOCK;
            Capabilities capabilities = file.capabilities();
            switch (step) {
                case WRITE -> {
                    buffer.clear();
                    for (int i = 0; i < BLOCK; i++) {
                        buffer.put(i, pattern());
                    }
                    buffer.position((int) done);
                    kiocb.initRw(Kiocb.Op.WRITE, file, KvecIter.of(Direction.SOURCE, buffer), pos + done,
                            capabilities.nativeFua() ? Kiocb.IOCB_DSYNC : 0);
                }
                case SYNC -> kiocb.initFsync(file, true);
                case READ, READ_ZEROS -> {
                    if (done == 0) {
                        buffer.clear();
                        for (int i = 0; i < BLOCK; i++) {
                            buffer.put(i, (byte) 0x5a);
                        }
                    }
                    buffer.clear().position((int) done);
                    kiocb.initRw(Kiocb.Op.READ, file, KvecIter.of(Direction.DEST, buffer), pos + done, 0);
                }
                case ZERO -> kiocb.initFallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, pos, BLOCK);
                default -> throw new IllegalStateException("step " + step);
            }
            kiocb.initCallback(this, null);
            submitFromAnyContext(kiocb);
        }

        // Runs on a backend thread or inside a submission: records violations instead of throwing.
        @Override
        public void complete(Kiocb completed, long res)
        {
            if (res < 0 && !(step == ZERO && (res == -Errno.EOPNOTSUPP || !file.capabilities().zero()))) {
                violations.add("chain " + index + " step " + step + " round " + round + ": " + Errno.name(res));
                stop();
                return;
            }
            if ((step == WRITE || step == READ || step == READ_ZEROS) && res < BLOCK - done) {
                if (res <= 0) {
                    violations.add("chain " + index + " step " + step + ": transferred " + res + " of " + (BLOCK - done));
                    stop();
                    return;
                }
                done += res;
                next();
                return;
            }
            done = 0;
            if (step == ZERO) {
                zeroed = res == 0;
            }
            if (step == READ || step == READ_ZEROS) {
                byte expected = step == READ_ZEROS && zeroed ? 0 : pattern();
                for (int i = 0; i < BLOCK; i++) {
                    if (buffer.get(i) != expected) {
                        violations.add("chain " + index + " round " + round + ": byte " + i + " reads " + buffer.get(i) + ", expected " + expected);
                        stop();
                        return;
                    }
                }
            }
            step++;
            if (step > READ_ZEROS) {
                step = WRITE;
                round++;
                if (round == rounds) {
                    stop();
                    return;
                }
            }
            next();
        }

        private void stop()
        {
            aio.free(kiocb);
            finished.countDown();
        }
    }

    /**
     * Possible values of every byte: the file is cut into ranges, each with the writers whose value a
     * byte of it may hold (-1 for the initial content).
     */
    private static final class Model
    {
        private final byte[] initial;
        private final List<long[]> writeRanges = new ArrayList<>();
        private final List<byte[]> writeData = new ArrayList<>();
        private final TreeMap<Long, int[]> candidates = new TreeMap<>();

        Model(byte[] initial)
        {
            this.initial = initial;
            candidates.put(0L, new int[] {-1});
        }

        int addWrite(long offset, byte[] data)
        {
            writeRanges.add(new long[] {offset, data.length});
            writeData.add(data);
            return writeData.size() - 1;
        }

        byte value(int writer, long pos)
        {
            if (writer < 0) {
                return initial[(int) pos];
            }
            return writeData.get(writer)[(int) (pos - writeRanges.get(writer)[0])];
        }

        boolean covers(int writer, long pos)
        {
            long[] range = writeRanges.get(writer);
            return pos >= range[0] && pos < range[0] + range[1];
        }

        void checkRead(long offset, byte[] read, List<Request> waveWrites)
        {
            List<Request> overlapping = waveWrites.stream()
                    .filter(w -> w.offset < offset + read.length && offset < w.offset + w.length)
                    .toList();
            for (int i = 0; i < read.length; i++) {
                long pos = offset + i;
                if (matches(candidates.floorEntry(pos).getValue(), pos, read[i])) {
                    continue;
                }
                boolean ok = false;
                for (Request write : overlapping) {
                    if (covers(write.writer, pos) && value(write.writer, pos) == read[i]) {
                        ok = true;
                        break;
                    }
                }
                if (!ok) {
                    fail("read of " + read.length + " bytes at " + offset + ": byte at " + pos + " is " + read[i]
                            + ", which neither the file held before nor any write in flight with the read wrote");
                }
            }
        }

        void applyWave(List<Request> writes)
        {
            TreeSet<Long> bounds = new TreeSet<>();
            for (Request write : writes) {
                bounds.add(write.offset);
                bounds.add(write.offset + write.length);
            }
            for (long bound : bounds) {
                if (bound < initial.length && !candidates.containsKey(bound)) {
                    candidates.put(bound, candidates.floorEntry(bound).getValue());
                }
            }
            Long start = bounds.isEmpty() ? null : bounds.first();
            while (start != null) {
                Long end = bounds.higher(start);
                if (end == null) {
                    break;
                }
                long from = start;
                int[] covering = writes.stream()
                        .filter(w -> w.offset <= from && from < w.offset + w.length)
                        .mapToInt(w -> w.writer)
                        .toArray();
                if (covering.length > 0) {
                    candidates.subMap(start, false, end, false).clear();
                    candidates.put(start, covering);
                }
                start = end;
            }
        }

        /** Checks every byte; returns how many had exactly one possible value. */
        long checkFinal(byte[] whole)
        {
            long exact = 0;
            for (Map.Entry<Long, int[]> entry : candidates.entrySet()) {
                Long next = candidates.higherKey(entry.getKey());
                long end = next == null ? whole.length : next;
                int[] writers = entry.getValue();
                for (long pos = entry.getKey(); pos < end; pos++) {
                    if (!matches(writers, pos, whole[(int) pos])) {
                        fail("byte at " + pos + " is " + whole[(int) pos] + ", expected the value of one of the writers "
                                + Arrays.toString(writers) + " (-1: initial content)");
                    }
                }
                if (writers.length == 1) {
                    exact += end - entry.getKey();
                }
            }
            return exact;
        }

        private boolean matches(int[] writers, long pos, byte actual)
        {
            for (int writer : writers) {
                if (value(writer, pos) == actual) {
                    return true;
                }
            }
            return false;
        }
    }

    // ---------------------------------------------------------------- helpers for subclasses

    /** Opens {@code path} through the factory under test, with this suite's direct mode and options. */
    protected BackingFile open(Path path, boolean readOnly)
            throws IOException
    {
        return factory().open(new BackendConfig(path, readOnly, direct(), queueDepth(), options()));
    }

    /**
     * Creates {@code name} in {@link #dir}: {@code size} bytes that the backend reads as zeros except
     * for the ranges of {@code data} (offset to bytes, not overlapping). Every file the suite opens is
     * made here. The default writes the ranges as they are and leaves the rest to the file system's
     * holes; a backend that keeps the bytes otherwise (encrypted, compressed, behind a header)
     * overrides it, and {@link #readFile(Path)} with it.
     */
    protected Path createFile(String name, long size, NavigableMap<Long, byte[]> data)
            throws IOException
    {
        Path path = dir.resolve(name);
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            for (Map.Entry<Long, byte[]> range : data.entrySet()) {
                ByteBuffer buffer = ByteBuffer.wrap(range.getValue());
                while (buffer.hasRemaining()) {
                    channel.write(buffer, range.getKey() + buffer.position());
                }
            }
        }
        if (Files.size(path) < size) {
            // ftruncate(2): the file grows by a hole
            try (RandomAccessFile file = new RandomAccessFile(path.toFile(), "rw")) {
                file.setLength(size);
            }
        }
        return path;
    }

    /** Creates {@code name} holding {@code content}, every byte written (no holes). */
    protected final Path createFile(String name, byte[] content)
            throws IOException
    {
        return createFile(name, content.length, new TreeMap<>(Map.of(0L, content)));
    }

    /**
     * What a closed file holds, as the backend would read it: how the suite checks, behind the
     * backend's back, that writes reached the file. The default reads the bytes as they are.
     */
    protected byte[] readFile(Path path)
            throws IOException
    {
        return Files.readAllBytes(path);
    }

    /**
     * Checks that the closed file holds {@code expected}, read with {@link #readFile(Path)}: that
     * writes reached it. Checks nothing for a backend that does not {@link #keepsWritesAfterClose()}.
     */
    protected void assertFileHolds(byte[] expected, Path path, String what)
            throws IOException
    {
        if (!keepsWritesAfterClose()) {
            return;
        }
        byte[] actual = readFile(path);
        assertEquals(expected.length, actual.length, what + ": the size of the file");
        assertArrayEquals(expected, actual, what);
    }

    /**
     * Submits a prepared kiocb through the {@link AioKernel} and waits for its result; frees it.
     * Fails if the kiocb completes more than once.
     */
    protected long submitAndWait(UnaryOperator<Kiocb> prepare)
            throws Exception
    {
        Kiocb kiocb = aio.alloc();
        CompletableFuture<Long> result = new CompletableFuture<>();
        AtomicInteger completions = new AtomicInteger();
        prepare.apply(kiocb).initCallback((k, res) -> {
            if (completions.incrementAndGet() > 1) {
                violations.add(k + " completed " + completions.get() + " times");
            }
            result.complete(res);
        }, null);
        aio.submit(kiocb);
        long res;
        try {
            res = result.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        }
        catch (TimeoutException e) {
            throw new AssertionError("kiocb never completed: " + kiocb, e);
        }
        aio.free(kiocb);
        return res;
    }

    /** One read or write submission; checks that the iterator advanced by the result. */
    protected long submitRw(Kiocb.Op op, BackingFile file, IovIter iter, long pos)
            throws Exception
    {
        long before = iter.count();
        long res = submitAndWait(kiocb -> kiocb.initRw(op, file, iter, pos, 0));
        if (res >= 0) {
            assertTrue(res <= before, op + " transferred " + res + " bytes of " + before);
            assertEquals(before - res, iter.count(), op + " of " + res + " bytes must advance the iterator by as much");
        }
        else {
            assertTrue(res != Kiocb.QUEUED, "QUEUED as a result");
        }
        return res;
    }

    /** Reads into {@code buf} from {@code pos}, resubmitting after short reads; returns the bytes read (less at end of file). */
    protected long readFully(BackingFile file, IoBuf buf, long pos)
            throws Exception
    {
        IovIter iter = buf.iter(Direction.DEST);
        long done = 0;
        while (iter.count() > 0) {
            long res = submitRw(Kiocb.Op.READ, file, iter, pos + done);
            if (res < 0) {
                fail("read of " + iter.count() + " bytes at " + (pos + done) + ": " + Errno.name(res));
            }
            if (res == 0) {
                break;
            }
            done += res;
        }
        buf.assertGapsIntact();
        return done;
    }

    protected byte[] readFully(BackingFile file, Kind kind, long pos, int length, boolean aligned)
            throws Exception
    {
        try (IoBuf buf = new IoBuf(kind, length, aligned, new Random(pos ^ length))) {
            long n = readFully(file, buf, pos);
            assertEquals(length, n, "read of " + length + " bytes at " + pos + " inside the file was short");
            return buf.get();
        }
    }

    protected void writeFully(BackingFile file, Kind kind, long pos, byte[] data, boolean aligned)
            throws Exception
    {
        try (IoBuf buf = new IoBuf(kind, data.length, aligned, new Random(pos * 31 + data.length))) {
            buf.put(data);
            IovIter iter = buf.iter(Direction.SOURCE);
            long done = 0;
            while (iter.count() > 0) {
                long res = submitRw(Kiocb.Op.WRITE, file, iter, pos + done);
                if (res <= 0) {
                    fail("write of " + iter.count() + " bytes at " + (pos + done) + ": " + (res == 0 ? "no progress" : Errno.name(res)));
                }
                done += res;
            }
            buf.assertGapsIntact();
        }
    }

    /**
     * Submits {@code op} until the iterator is used up, resubmitting the rest after short transfers;
     * a read stops at end of file. Returns the bytes transferred; fails on an error.
     */
    protected long transferFully(Kiocb.Op op, BackingFile file, IovIter iter, long pos)
            throws Exception
    {
        long done = 0;
        while (iter.count() > 0) {
            long res = submitRw(op, file, iter, pos + done);
            if (res < 0) {
                fail(op + " of " + iter.count() + " bytes at " + (pos + done) + ": " + Errno.name(res));
            }
            if (res == 0) {
                if (op == Kiocb.Op.WRITE) {
                    fail("write of " + iter.count() + " bytes at " + (pos + done) + " made no progress");
                }
                break;
            }
            done += res;
        }
        return done;
    }

    protected long fsync(BackingFile file, boolean datasync)
            throws Exception
    {
        return submitAndWait(kiocb -> kiocb.initFsync(file, datasync));
    }

    protected long fallocate(BackingFile file, int mode, long offset, long length)
            throws Exception
    {
        return submitAndWait(kiocb -> kiocb.initFallocate(file, mode, offset, length));
    }

    /** The extents of a range as {offset, length, type} triples; fails on an error. */
    protected static List<long[]> extents(BackingFile file, long offset, long length)
    {
        List<long[]> extents = new ArrayList<>();
        long res = file.extents(offset, length, (start, n, type) -> extents.add(new long[] {start, n, type}));
        assertEquals(0, res, "extents: " + Errno.name(res));
        return extents;
    }

    /** Ascending, contiguous, non-empty, of valid types, starting at {@code offset} and covering the range. */
    protected static void checkExtents(List<long[]> extents, long offset, long length)
    {
        assertFalse(extents.isEmpty(), "no extents for [" + offset + ", " + (offset + length) + ")");
        long next = offset;
        for (long[] extent : extents) {
            assertEquals(next, extent[0], "extents must be contiguous and ascending from the asked offset");
            assertTrue(extent[1] > 0, "empty extent at " + extent[0]);
            assertTrue(next < offset + length, "extent at " + extent[0] + " beyond the asked range");
            int type = (int) extent[2];
            assertEquals(0, type & ~(ExtentSink.HOLE | ExtentSink.ZERO), "unknown extent type " + type);
            if ((type & ExtentSink.HOLE) != 0) {
                assertEquals(ExtentSink.HOLE | ExtentSink.ZERO, type, "a hole reads as zeros: HOLE|ZERO");
            }
            next = extent[0] + extent[1];
        }
        assertTrue(next >= offset + length, "extents end at " + next + ", short of " + (offset + length));
    }

    protected static void assertData(List<long[]> extents, long offset, long length)
    {
        for (long[] extent : extents) {
            if (extent[0] < offset + length && offset < extent[0] + extent[1]) {
                assertEquals(ExtentSink.DATA, extent[2], "range [" + offset + ", " + (offset + length) + ") holds data, but ["
                        + extent[0] + ", " + (extent[0] + extent[1]) + ") is reported with type " + extent[2]);
            }
        }
    }

    protected static void assertHole(List<long[]> extents, long offset, long length)
    {
        long covered = 0;
        for (long[] extent : extents) {
            long from = Math.max(offset, extent[0]);
            long to = Math.min(offset + length, extent[0] + extent[1]);
            if (from < to) {
                assertEquals(ExtentSink.HOLE | ExtentSink.ZERO, extent[2], "range [" + offset + ", " + (offset + length)
                        + ") is a hole, but [" + extent[0] + ", " + (extent[0] + extent[1]) + ") is reported with type " + extent[2]);
                covered += to - from;
            }
        }
        assertEquals(length, covered, "hole not covered by the extents");
    }

    /**
     * Skips the rest of the test, and fails it on CI, unless the backend's holes show: always for a
     * backend with holes of its own, and for one with the file system's (see
     * {@link #holesFromFileSystem()}) where that file system is known to report holes through
     * SEEK_HOLE. Elsewhere (an overlay, a network file system) a file backend reports no holes.
     */
    protected void assumeHolesReported()
            throws IOException
    {
        if (!holesFromFileSystem()) {
            return;
        }
        String type = Files.getFileStore(dir).type();
        CiAssumptions.assumeAvailable(FILE_SYSTEMS_WITH_HOLES.contains(type),
                "the file system under " + dir + " (" + type + ") is not known to report holes through SEEK_HOLE");
    }

    /**
     * Skips the rest of the test, and fails it on CI, when an fallocate the backend declares it can
     * do failed with {@code -EOPNOTSUPP}: the capability says it can work, the file system under
     * {@link #dir} decides (see {@link Capabilities#trim()}).
     */
    protected void assumeFileSystemCan(long fallocateResult, String what)
    {
        CiAssumptions.assumeAvailable(fallocateResult != -Errno.EOPNOTSUPP, "the file system under " + dir + " cannot " + what + " (EOPNOTSUPP)");
    }

    protected static byte[] randomBytes(Random random, int length)
    {
        byte[] bytes = new byte[length];
        random.nextBytes(bytes);
        return bytes;
    }

    protected static byte[] nonZeroBytes(Random random, int length)
    {
        byte[] bytes = randomBytes(random, length);
        for (int i = 0; i < length; i++) {
            bytes[i] |= 1;
        }
        return bytes;
    }

    /**
     * Request memory of one {@link Kind}, split into segments: aligned (page-aligned addresses, block
     * multiples) or not (odd addresses and lengths, empty segments). Between segments of the heap and
     * direct kinds lie canary bytes that I/O must not touch. BVEC memory comes from the suite's pool
     * and goes back on {@link #close()}.
     */
    protected final class IoBuf
            implements AutoCloseable
    {
        private static final byte CANARY = 0x5a;

        private final Kind kind;
        private final int length;
        private final List<ByteBuffer> segments = new ArrayList<>();
        private ByteBuffer backing;
        private Page[] pages;
        private int nrPages;

        public IoBuf(Kind kind, int length, boolean aligned, Random random)
                throws InterruptedException
        {
            this.kind = kind;
            this.length = length;
            if (kind == Kind.BVEC) {
                pages = new Page[PagePool.maxPages(length)];
                nrPages = pool.allocate(length, pages);
                long left = length;
                for (int i = 0; i < nrPages; i++) {
                    int n = (int) Math.min(left, pages[i].size());
                    segments.add(pages[i].buffer().duplicate().clear().limit(n));
                    left -= n;
                }
                return;
            }
            List<Integer> lengths = new ArrayList<>();
            for (int left = length; left > 0; ) {
                int n;
                if (aligned) {
                    n = Math.min(left, BLOCK * (1 + random.nextInt(4)));
                }
                else {
                    if (random.nextInt(8) == 0) {
                        lengths.add(0);
                    }
                    n = Math.min(left, 1 + random.nextInt(3 * BLOCK));
                }
                lengths.add(n);
                left -= n;
            }
            int gap = aligned ? BLOCK : 7;
            int capacity = length + gap * (lengths.size() + 1);
            if (kind == Kind.IOVEC) {
                backing = ByteBuffer.allocate(capacity);
            }
            else {
                backing = DirectMemory.allocateAligned(capacity + BLOCK);
            }
            while (backing.hasRemaining()) {
                backing.put(CANARY);
            }
            int at = aligned ? 0 : 1 + random.nextInt(gap);
            for (int n : lengths) {
                segments.add(backing.duplicate().clear().position(at).limit(at + n));
                at += n + (aligned ? 0 : 1 + random.nextInt(gap));
            }
        }

        /** A new iterator over the whole memory. */
        public IovIter iter(Direction direction)
        {
            switch (kind) {
                case IOVEC:
                    return IovecIter.of(direction, duplicates());
                case KVEC:
                    return KvecIter.of(direction, duplicates());
                case BVEC:
                    return new BvecIter().reset(direction, pages, nrPages, length);
                default:
                    throw new AssertionError(kind);
            }
        }

        public void put(byte[] data)
        {
            assertEquals(length, data.length, "bytes put into " + kind + " memory of " + length + " bytes");
            int done = 0;
            for (ByteBuffer segment : segments) {
                segment.duplicate().put(data, done, segment.remaining());
                done += segment.remaining();
            }
        }

        public byte[] get()
        {
            byte[] data = new byte[length];
            int done = 0;
            for (ByteBuffer segment : segments) {
                segment.duplicate().get(data, done, segment.remaining());
                done += segment.remaining();
            }
            return data;
        }

        /** Fails if I/O wrote outside the segments. */
        public void assertGapsIntact()
        {
            if (backing == null) {
                return;
            }
            int at = 0;
            for (ByteBuffer segment : segments) {
                for (; at < segment.position(); at++) {
                    assertEquals(CANARY, backing.get(at), "byte " + at + " between segments of " + kind + " memory was overwritten");
                }
                at = Math.max(at, segment.limit());
            }
            for (; at < backing.capacity(); at++) {
                assertEquals(CANARY, backing.get(at), "byte " + at + " after the segments of " + kind + " memory was overwritten");
            }
        }

        private ByteBuffer[] duplicates()
        {
            ByteBuffer[] buffers = new ByteBuffer[segments.size()];
            for (int i = 0; i < buffers.length; i++) {
                buffers[i] = segments.get(i).duplicate();
            }
            return buffers;
        }

        @Override
        public void close()
        {
            if (pages != null) {
                pool.free(pages, nrPages);
                pages = null;
            }
        }
    }

    // ---------------------------------------------------------------- contracts a backend author relies on

    /**
     * A backend takes the operation from the kiocb and changes nothing in it but the iterator, which
     * it advances by exactly what it transferred. A read or write may be short, but a write, and a
     * read inside the file, transfer something; the rest, resubmitted at {@code pos + res} as the loop
     * device does, lands where it belongs. See {@link BackingFile} and {@link Kiocb}.
     */
    @Test
    public void contractOperationsChangeNothingInTheKiocbButTheIterator()
            throws Exception
    {
        int size = 256 * 1024;
        int directFrom = 4 * BLOCK;
        byte[] content = randomBytes(new Random(31), size);
        byte[] model = new byte[size];
        try (BackingFile file = open(createFile("contract-kiocb", model), false)) {
            Capabilities capabilities = file.capabilities();
            // Heap memory at an odd position (the bounce path), then aligned direct memory (the straight path).
            contractTransferAll(file, Kiocb.Op.WRITE, IovecIter.of(Direction.SOURCE, Arrays.copyOfRange(content, 3, 100_003)), 3,
                    capabilities.nativeFua() ? Kiocb.IOCB_DSYNC : 0);
            ByteBuffer direct = DirectMemory.allocateAligned(size - directFrom);
            direct.put(content, directFrom, size - directFrom).flip();
            contractTransferAll(file, Kiocb.Op.WRITE, KvecIter.of(Direction.SOURCE, direct), directFrom, 0);
            System.arraycopy(content, 3, model, 3, size - 3);

            for (boolean datasync : new boolean[] {true, false}) {
                long res = contractSubmit(kiocb -> kiocb.initFsync(file, datasync));
                assertTrue(res == 0 || (res == -Errno.EOPNOTSUPP && !capabilities.flush()), "fsync: " + Errno.name(res));
            }
            long zero = contractSubmit(kiocb -> kiocb.initFallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, size - BLOCK - 5, BLOCK));
            if (zero == 0) {
                Arrays.fill(model, size - BLOCK - 5, size - 5, (byte) 0);
            }
            else {
                assertTrue(zero < 0 && zero != Kiocb.QUEUED, "fallocate: " + zero);
            }

            byte[] whole = new byte[size];
            contractTransferAll(file, Kiocb.Op.READ, IovecIter.of(Direction.DEST, whole), 0, 0);
            assertArrayEquals(model, whole, "read back through heap memory");
            direct.clear();
            contractTransferAll(file, Kiocb.Op.READ, KvecIter.of(Direction.DEST, direct), directFrom, 0);
            byte[] tail = new byte[size - directFrom];
            direct.clear().get(tail);
            assertArrayEquals(Arrays.copyOfRange(model, directFrom, size), tail, "read back through direct memory");
        }
    }

    /**
     * A backend that declares no {@link Capabilities#extents()} and is asked for extents all the same
     * reports the whole range as data (see {@link BackingFile#extents}). What a backend that declares
     * them reports is checked by {@link #extentsOfSparseFile()}.
     */
    @Test
    public void contractExtentsWithoutTheCapabilityAreAllData()
            throws Exception
    {
        int size = 4 << 20;
        NavigableMap<Long, byte[]> data = new TreeMap<>();
        for (long at : new long[] {1 << 20, size - BLOCK}) {
            data.put(at, nonZeroBytes(new Random(at), BLOCK));
        }
        // through createFile, like every file the suite opens: a backend's files need not be plain files
        Path path = createFile("contract-no-extents", size, data);
        try (BackingFile file = open(path, false)) {
            org.junit.jupiter.api.Assumptions.assumeFalse(file.capabilities().extents(), "declares extents: extentsOfSparseFile checks them");
            for (long[] range : new long[][] {{0, size}, {1000, 5000}, {(1 << 20) + 10, 3 * BLOCK}}) {
                List<String> reported = new ArrayList<>();
                long next = range[0];
                long res = file.extents(range[0], range[1], (offset, length, type) -> reported.add(offset + "+" + length + ":" + type));
                assertEquals(0, res, "extents without the capability: " + Errno.name(res));
                assertFalse(reported.isEmpty(), "no extents for " + Arrays.toString(range));
                for (String extent : reported) {
                    String[] parts = extent.split("[+:]");
                    assertEquals(next, Long.parseLong(parts[0]), "contiguous from the asked offset: " + reported);
                    assertEquals(ExtentSink.DATA, Integer.parseInt(parts[2]), "a file without extents reports data only: " + reported);
                    next += Long.parseLong(parts[1]);
                }
                assertEquals(range[0] + range[1], next, "the whole range: " + reported);
            }
        }
    }

    /**
     * {@link BackingFile#size()} of a file that opened is its length, 0 included, read-only or not;
     * {@code -errno} is for a size that cannot be told, which the loop device refuses.
     */
    @Test
    public void contractSizeIsTheLengthOfTheFile()
            throws Exception
    {
        for (int length : new int[] {0, 1, 3 * BLOCK + 17}) {
            Path path = createFile("contract-size-" + length, randomBytes(new Random(length), length));
            for (boolean readOnly : new boolean[] {false, true}) {
                try (BackingFile file = open(path, readOnly)) {
                    assertEquals(length, file.size(), "size of a file of " + length + " bytes" + (readOnly ? ", read-only" : ""));
                }
            }
        }
    }

    /** Transfers all of {@code iter} at {@code pos}, resubmitting the rest of a short transfer at {@code pos + res}, as the loop device does. */
    private void contractTransferAll(BackingFile file, Kiocb.Op op, IovIter iter, long pos, int flags)
            throws Exception
    {
        long done = 0;
        while (iter.count() > 0) {
            long at = pos + done;
            long before = iter.count();
            long res = contractSubmit(kiocb -> kiocb.initRw(op, file, iter, at, flags));
            assertTrue(res > 0, op + " of " + before + " bytes at " + at + ", inside the file, transferred nothing: " + (res < 0 ? Errno.name(res) : "0"));
            assertTrue(res <= before, op + " transferred " + res + " bytes of " + before);
            assertEquals(before - res, iter.count(), op + " of " + res + " bytes must advance the iterator by as much");
            done += res;
        }
    }

    /** Submits a prepared kiocb and waits for its result; fails if at its completion the kiocb no longer says what was submitted. */
    private long contractSubmit(UnaryOperator<Kiocb> prepare)
            throws Exception
    {
        Kiocb kiocb = prepare.apply(aio.alloc());
        String submitted = contractDescription(kiocb, kiocb.iter());
        IovIter iter = kiocb.iter();
        CompletableFuture<String> atCompletion = new CompletableFuture<>();
        CompletableFuture<Long> result = new CompletableFuture<>();
        kiocb.initCallback((k, res) -> {
            atCompletion.complete(contractDescription(k, iter));
            result.complete(res);
        }, null);
        aio.submit(kiocb);
        long res;
        try {
            res = result.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        }
        catch (TimeoutException e) {
            throw new AssertionError("kiocb never completed: " + kiocb, e);
        }
        aio.free(kiocb);
        assertEquals(submitted, atCompletion.get(), "the backend changed the kiocb; it may only advance the iterator");
        return res;
    }

    private static String contractDescription(Kiocb kiocb, IovIter iter)
    {
        return kiocb.op() + " of file@" + System.identityHashCode(kiocb.file()) + " pos=" + kiocb.pos() + " flags=" + kiocb.flags()
                + " datasync=" + kiocb.datasync() + " mode=" + kiocb.mode() + " length=" + kiocb.length()
                + (kiocb.iter() == iter ? "" : " with another iterator");
    }
}
