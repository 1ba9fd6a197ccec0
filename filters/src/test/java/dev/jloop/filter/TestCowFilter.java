package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.RecordingBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.jloop.api.IovIter.Direction.DEST;
import static dev.jloop.api.IovIter.Direction.SOURCE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the cow filter does: the overlay's semantics, its file and map, and the commit. */
class TestCowFilter
{
    private static final int SIZE = 1 << 20;
    private static final int BLOCK = 64 * 1024;
    /** Where the file below has a hole; the rest is non-zero data. */
    private static final int HOLE_FROM = 512 * 1024;
    private static final int HOLE_TO = 768 * 1024;

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final KiocbRunner io = new KiocbRunner();
    private final byte[] original = original();
    private final MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
    private final RecordingBackingFile below = new RecordingBackingFile(memory);

    TestCowFilter()
    {
        memory.write(0, Arrays.copyOf(original, HOLE_FROM));
        memory.write(HOLE_TO, Arrays.copyOfRange(original, HOLE_TO, SIZE));
    }

    private static byte[] original()
    {
        byte[] bytes = new byte[SIZE];
        new Random(1).nextBytes(bytes);
        for (int i = 0; i < SIZE; i++) {
            bytes[i] = i >= HOLE_FROM && i < HOLE_TO ? 0 : (byte) (bytes[i] | 1);
        }
        return bytes;
    }

    @Test
    void writesReadBackAndNeverReachTheFileBelow()
            throws Exception
    {
        Random random = new Random(2);
        byte[] model = original.clone();
        try (CowBackingFile file = wrap(Map.of("cow-block-size", "16K"))) {
            for (int i = 0; i < 300; i++) {
                int offset = random.nextBoolean() ? random.nextInt(SIZE / 4096) * 4096 : random.nextInt(SIZE);
                int length = Math.min(SIZE - offset, random.nextBoolean() ? 1 + random.nextInt(100) : 1 + random.nextInt(100_000));
                byte[] data = new byte[length];
                random.nextBytes(data);
                assertEquals(length, io.write(file, offset, data));
                System.arraycopy(data, 0, model, offset, length);
                int around = Math.max(0, offset - 20_000);
                int aroundLength = Math.min(SIZE - around, length + 40_000);
                assertArrayEquals(Arrays.copyOfRange(model, around, around + aroundLength), io.read(file, around, aroundLength), "around a write at " + offset);
            }
            assertEquals(0, io.fsync(file));
            assertArrayEquals(model, io.read(file, 0, SIZE));
        }
        assertArrayEquals(original, content(memory), "the file below, byte for byte");
        assertEquals(List.of(), below.ops().stream().filter(op -> !op.startsWith("read ") && !op.startsWith("extents ")).toList(),
                "operations other than reads reached the file below");
    }

    @Test
    void aWriteOfPartOfABlockCopiesTheRestFromBelow()
            throws Exception
    {
        try (CowBackingFile file = wrap(Map.of())) {
            byte[] data = filled(100, (byte) 0);
            assertEquals(100, io.write(file, BLOCK + 1000, data));
            byte[] expected = Arrays.copyOfRange(original, BLOCK, 2 * BLOCK);
            System.arraycopy(data, 0, expected, 1000, 100);
            assertArrayEquals(expected, io.read(file, BLOCK, BLOCK));
            assertEquals(CowOverlay.DATA, file.overlay().state(1));
            assertEquals(CowOverlay.BELOW, file.overlay().state(0));
            assertEquals(CowOverlay.BELOW, file.overlay().state(2));

            // a read across both goes through the overlay, and takes what is below from below
            assertArrayEquals(concat(Arrays.copyOfRange(original, BLOCK - 10, BLOCK), expected, Arrays.copyOfRange(original, 2 * BLOCK, 2 * BLOCK + 10)),
                    io.read(file, BLOCK - 10, BLOCK + 20));
        }
    }

    @Test
    void trimAndZeroReadAsZerosNotAsTheFileBelow()
            throws Exception
    {
        byte[] model = original.clone();
        try (CowBackingFile file = wrap(Map.of())) {
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, BLOCK));
            Arrays.fill(model, 0, BLOCK, (byte) 0);
            assertEquals(0, io.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 2 * BLOCK - 300, BLOCK + 600));
            Arrays.fill(model, 2 * BLOCK - 300, 3 * BLOCK + 300, (byte) 0);
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 5 * BLOCK + 7, 10));
            Arrays.fill(model, 5 * BLOCK + 7, 5 * BLOCK + 17, (byte) 0);
            assertArrayEquals(model, io.read(file, 0, SIZE));
            assertEquals(CowOverlay.ZERO, file.overlay().state(0));
            assertEquals(CowOverlay.DATA, file.overlay().state(1), "part of a block zeroed: copied up");
            assertEquals(CowOverlay.ZERO, file.overlay().state(2));
            assertEquals(CowOverlay.DATA, file.overlay().state(3));

            // a zeroed block written in part is zeros around the write, not what is below
            assertEquals(10, io.write(file, 100, filled(10, (byte) 7)));
            Arrays.fill(model, 100, 110, (byte) 7);
            assertArrayEquals(Arrays.copyOf(model, BLOCK), io.read(file, 0, BLOCK));

            // past the end: kept size, nothing else changes
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, SIZE - 10, 1000));
            Arrays.fill(model, SIZE - 10, SIZE, (byte) 0);
            assertArrayEquals(model, io.read(file, 0, SIZE));
            assertEquals(SIZE, file.size());
            assertEquals(-Errno.EFBIG, io.fallocate(file, Fallocate.ZERO_RANGE, SIZE - 10, 1000), "zeroing past the end without KEEP_SIZE");
            assertEquals(-Errno.EOPNOTSUPP, io.fallocate(file, Fallocate.PUNCH_HOLE, 0, 10), "punching without KEEP_SIZE");
        }
        assertArrayEquals(original, content(memory));
    }

    @Test
    void extentsReportTheOverlayOverTheFileBelow()
            throws Exception
    {
        try (CowBackingFile file = wrap(Map.of())) {
            assertEquals(List.of("0+524288:0", "524288+262144:3", "786432+262144:0"), extents(file, 0, SIZE), "below, before any change");
            // a write into a hole below: that block becomes data
            assertEquals(10, io.write(file, HOLE_FROM + BLOCK + 5, filled(10, (byte) 9)));
            // a trimmed data block: a hole
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, BLOCK, BLOCK));
            // zeroed in part: data (the rest of the block is below's data)
            assertEquals(0, io.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 3 * BLOCK, 100));
            assertEquals(List.of("0+65536:0", "65536+65536:3", "131072+393216:0", "524288+65536:3", "589824+65536:0", "655360+131072:3", "786432+262144:0"),
                    extents(file, 0, SIZE));
            assertEquals(List.of("100+200:0"), extents(file, 100, 200), "from inside an extent");
            assertEquals(List.of("61440+4096:0", "65536+6144:3"), extents(file, 60 * 1024, 10 * 1024));
            assertEquals(List.of("589824+65536:0", "655360+1000:3"), extents(file, HOLE_FROM + BLOCK, BLOCK + 1000));
        }
    }

    @Test
    void extentsStopWhenTheSinkSaysSo()
            throws Exception
    {
        try (CowBackingFile file = wrap(Map.of())) {
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, BLOCK, BLOCK));
            List<String> seen = new ArrayList<>();
            assertEquals(0, file.extents(0, SIZE, (offset, length, type) -> {
                seen.add(offset + "+" + length + ":" + type);
                return false;
            }));
            assertEquals(List.of("0+65536:0"), seen);
        }
    }

    @Test
    void keptOverlayContinuesWhereItLeftOff()
            throws Exception
    {
        Path overlay = dir.resolve("disk.overlay");
        byte[] model = original.clone();
        try (CowBackingFile file = wrap(Map.of("cow-file", overlay.toString(), "cow-block-size", "4K"))) {
            assertEquals(5000, io.write(file, 3000, filled(5000, (byte) 4)));
            Arrays.fill(model, 3000, 8000, (byte) 4);
            assertEquals(0, io.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 40_000, 50_000));
            Arrays.fill(model, 40_000, 90_000, (byte) 0);
        }
        assertTrue(Files.exists(overlay) && Files.exists(CowOverlay.mapPath(overlay)));
        assertEquals(CowOverlay.HEADER + SIZE / 4096, Files.size(CowOverlay.mapPath(overlay)), "one byte per block after the header");

        IOException otherBlockSize = assertThrows(IOException.class, () -> wrap(Map.of("cow-file", overlay.toString(), "cow-block-size", "64K")));
        assertTrue(otherBlockSize.getMessage().contains("has blocks of 4096 bytes, not 65536"), otherBlockSize.getMessage());

        try (CowBackingFile file = wrap(Map.of("cow-file", overlay.toString()))) {
            assertEquals(4096, file.overlay().blockSize(), "an overlay keeps its block size");
            assertArrayEquals(model, io.read(file, 0, SIZE));
            assertEquals(10, io.write(file, SIZE - 10, filled(10, (byte) 5)));
            Arrays.fill(model, SIZE - 10, SIZE, (byte) 5);
        }
        try (CowBackingFile file = wrap(Map.of("cow-file", overlay.toString(), "cow-block-size", "4096"))) {
            assertArrayEquals(model, io.read(file, 0, SIZE));
        }
        assertArrayEquals(original, content(memory));
    }

    @Test
    void anOverlayInUseOfAnotherSizeOrNotAnOverlayIsRefused()
            throws Exception
    {
        Path overlay = dir.resolve("disk.overlay");
        Map<String, String> options = Map.of("cow-file", overlay.toString());
        try (CowBackingFile file = wrap(options)) {
            IOException inUse = assertThrows(IOException.class, () -> wrap(options));
            assertTrue(inUse.getMessage().endsWith("is in use: another jloop has it open"), inUse.getMessage());
            assertEquals(3, io.write(file, 0, filled(3, (byte) 1)), "the first is not disturbed");
        }

        IOException otherSize = assertThrows(IOException.class,
                () -> new CowFilterFactory().wrap(new MemoryBackingFile(SIZE / 2), BackendConfig.of(dir.resolve("disk")), options));
        assertTrue(otherSize.getMessage().contains("was made for a disk of 1048576 bytes, not 524288"), otherSize.getMessage());

        Path stranger = Files.write(dir.resolve("stranger"), new byte[] {1, 2, 3});
        IOException notOurs = assertThrows(IOException.class, () -> wrap(Map.of("cow-file", stranger.toString())));
        assertTrue(notOurs.getMessage().contains("exists but has no block map"), notOurs.getMessage());
        assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(stranger));

        Files.write(CowOverlay.mapPath(stranger), new byte[64]);
        IOException badMap = assertThrows(IOException.class, () -> wrap(Map.of("cow-file", stranger.toString())));
        assertTrue(badMap.getMessage().endsWith("is not the block map of a jloop overlay"), badMap.getMessage());
    }

    @Test
    void aTemporaryOverlayIsUnlinkedFromTheStart()
            throws Exception
    {
        try (CowBackingFile file = wrap(Map.of())) {
            Path overlay = file.overlay().path();
            assertFalse(Files.exists(overlay), overlay + " still has a name");
            assertFalse(Files.exists(CowOverlay.mapPath(overlay)));
            assertEquals(BLOCK, io.write(file, 0, filled(BLOCK, (byte) 3)));
            assertEquals(0, io.fsync(file));
            assertArrayEquals(filled(BLOCK, (byte) 3), io.read(file, 0, BLOCK));
        }
    }

    @Test
    void capabilitiesAreWritableOverAReadOnlyFile()
            throws Exception
    {
        MemoryBackingFile readOnly = MemoryBackingFile.builder(SIZE).readOnly(true).build();
        try (BackingFile file = new CowFilterFactory().wrap(readOnly, BackendConfig.of(dir.resolve("disk")), Map.of())) {
            Capabilities capabilities = file.capabilities();
            assertFalse(capabilities.readOnly());
            assertTrue(capabilities.flush() && capabilities.trim() && capabilities.zero() && capabilities.extents() && capabilities.multiConn());
            assertFalse(capabilities.nativeFua(), "FUA is a write and a flush");
            assertEquals(ThreadModel.PARALLEL, capabilities.threadModel());
            assertEquals(3, io.write(file, 0, filled(3, (byte) 8)));
        }
        Capabilities serialised = Capabilities.builder().readOnly(true).threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS).queueDepth(4).build();
        MemoryBackingFile serialisedBelow = MemoryBackingFile.builder(SIZE).capabilities(serialised).build();
        try (BackingFile file = new CowFilterFactory().wrap(serialisedBelow, BackendConfig.of(dir.resolve("disk")), Map.of())) {
            assertEquals(ThreadModel.SERIALIZE_ALL_REQUESTS, file.capabilities().threadModel(), "calls the file below as it allows");
            assertEquals(4, file.capabilities().queueDepth(), "one kiocb below per operation at most");
        }
    }

    @Test
    void aReadOnlyExportRefusesChanges()
            throws Exception
    {
        BackendConfig export = new BackendConfig(dir.resolve("disk"), true, false, 64, Map.of());
        try (BackingFile file = new CowFilterFactory().wrap(below, export, Map.of())) {
            assertTrue(file.capabilities().readOnly());
            assertEquals(-Errno.EPERM, io.write(file, 0, filled(3, (byte) 8)));
            assertEquals(-Errno.EPERM, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, BLOCK));
            assertArrayEquals(Arrays.copyOf(original, 1000), io.read(file, 0, 1000));
        }
    }

    /**
     * Writes into different bytes of one block, in flight together, each the block's first since it
     * was below: each copies the block up, and without a lock per block the last copy would bring
     * back what is below over the others' bytes. The reads below are slow to let them meet.
     */
    @Test
    void writesIntoOneBlockAtOnceKeepEachOthersBytes()
            throws Exception
    {
        BackingFile slow = new DelayFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("delay-read", "20ms"));
        byte[] model = original.clone();
        try (BackingFile file = new CowFilterFactory().wrap(slow, BackendConfig.of(dir.resolve("disk")), Map.of())) {
            List<CompletableFuture<Long>> writes = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                long pos = (long) (i % 4) * BLOCK + (i / 4) * 1000L;
                byte[] data = filled(500, (byte) (i + 1));
                System.arraycopy(data, 0, model, (int) pos, 500);
                ByteBuffer buffer = ByteBuffer.allocateDirect(500).put(data).flip();
                writes.add(io.submit(io.alloc().initRw(Kiocb.Op.WRITE, file, KvecIter.of(SOURCE, buffer), pos, 0)));
            }
            for (CompletableFuture<Long> write : writes) {
                assertEquals(500, write.get(60, TimeUnit.SECONDS));
            }
            assertArrayEquals(Arrays.copyOf(model, 4 * BLOCK), io.read(file, 0, 4 * BLOCK));
        }
    }

    @Test
    void errorsFromBelowReachTheCaller()
            throws Exception
    {
        BackingFile failing = new ErrorFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("error", "EIO", "error-ops", "read"));
        try (CowBackingFile file = (CowBackingFile) new CowFilterFactory().wrap(failing, BackendConfig.of(dir.resolve("disk")), Map.of())) {
            assertEquals(-Errno.EIO, io.run(io.alloc().initRw(Kiocb.Op.READ, file, KvecIter.of(DEST, ByteBuffer.allocateDirect(10)), 0, 0)));
            assertEquals(-Errno.EIO, io.write(file, 5, filled(10, (byte) 1)), "part of a block cannot be copied up");
            assertEquals(CowOverlay.BELOW, file.overlay().state(0));
            assertEquals(BLOCK, io.write(file, 0, filled(BLOCK, (byte) 1)), "a whole block needs nothing from below");
            assertArrayEquals(filled(BLOCK, (byte) 1), io.read(file, 0, BLOCK));
        }
    }

    @Test
    void commitWritesTheOverlayIntoTheFileAndRemovesIt()
            throws Exception
    {
        Path base = Files.write(dir.resolve("base.img"), original);
        Path overlay = dir.resolve("base.overlay");
        FilteredBackendFactory cow = new FilteredBackendFactory(new MemoryBackendFactory(), new CowFilterFactory(), Map.of("cow-file", overlay.toString()));
        byte[] model = original.clone();
        try (BackingFile file = cow.open(BackendConfig.of(base))) {
            assertEquals(70_000, io.write(file, 10_000, filled(70_000, (byte) 6)));
            Arrays.fill(model, 10_000, 80_000, (byte) 6);
            assertEquals(0, io.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 4 * BLOCK, 2 * BLOCK));
            Arrays.fill(model, 4 * BLOCK, 6 * BLOCK, (byte) 0);
            assertEquals(100, io.write(file, SIZE - 100, filled(100, (byte) 2)));
            Arrays.fill(model, SIZE - 100, SIZE, (byte) 2);
        }
        assertArrayEquals(original, Files.readAllBytes(base), "served through cow: the file is as it was");

        Path other = Files.write(dir.resolve("other.img"), new byte[SIZE + 1]);
        IOException wrongBase = assertThrows(IOException.class, () -> CowOverlay.commit(overlay, other));
        assertTrue(wrongBase.getMessage().contains("was made for a disk of 1048576 bytes, not 1048577"), wrongBase.getMessage());
        assertTrue(Files.exists(overlay), "a refused commit keeps the overlay");

        assertEquals(2 + 2 + 1, CowOverlay.commit(overlay, base), "blocks written: two of the write, two trimmed, the last");
        assertArrayEquals(model, Files.readAllBytes(base));
        assertFalse(Files.exists(overlay));
        assertFalse(Files.exists(CowOverlay.mapPath(overlay)));
        IOException none = assertThrows(IOException.class, () -> CowOverlay.commit(overlay, base));
        assertTrue(none.getMessage().startsWith("no overlay at "), none.getMessage());
    }

    @Test
    void optionsAreChecked()
    {
        CowFilterFactory factory = new CowFilterFactory();
        assertEquals("--cow-block-size: a block size is a power of two from 4K to 16M, not 3000",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("cow-block-size", "3000"))).getMessage());
        assertEquals("--cow-block-size: a block size is a power of two from 4K to 16M, not 33554432",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("cow-block-size", "32M"))).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("cow-size", "1"))).getMessage()
                .startsWith("the cow filter takes no option 'cow-size'; it takes: cow-block-size, cow-file"));
        factory.validate(Map.of("cow-file", "x.overlay", "cow-block-size", "1M"));
        assertTrue(factory.configureBackend(BackendConfig.of(dir.resolve("disk")), Map.of()).readOnly(), "the file below is opened read-only");
    }

    /** The cow filter over {@link #below}, which outlives it: tests open several over one file. */
    private CowBackingFile wrap(Map<String, String> options)
            throws IOException
    {
        BackingFile kept = new ForwardingBackingFile(below)
        {
            @Override
            public void close() {}
        };
        return (CowBackingFile) new CowFilterFactory().wrap(kept, BackendConfig.of(dir.resolve("disk")), new HashMap<>(options));
    }

    private static List<String> extents(BackingFile file, long offset, long length)
    {
        List<String> extents = new ArrayList<>();
        assertEquals(0, file.extents(offset, length, (from, n, type) -> extents.add(from + "+" + n + ":" + type)));
        return extents;
    }

    private static byte[] content(MemoryBackingFile file)
    {
        byte[] bytes = new byte[(int) file.size()];
        file.read(0, bytes);
        return bytes;
    }

    private static byte[] filled(int length, byte value)
    {
        byte[] bytes = new byte[length];
        Arrays.fill(bytes, value);
        return bytes;
    }

    private static byte[] concat(byte[]... parts)
    {
        int length = Arrays.stream(parts).mapToInt(part -> part.length).sum();
        byte[] bytes = new byte[length];
        int at = 0;
        for (byte[] part : parts) {
            System.arraycopy(part, 0, bytes, at, part.length);
            at += part.length;
        }
        return bytes;
    }
}
