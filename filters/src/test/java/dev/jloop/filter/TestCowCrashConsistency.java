package dev.jloop.filter;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Crash consistency of a kept overlay ({@code cow-file}): its files are {@link PowerCutFiles}, whose
 * writes stay in a volatile cache until synced and which a power cut ends, keeping some of them. A
 * crashed filter is abandoned, never closed, as a process that dies; a new one opens the same
 * overlay. What must hold: every byte reads as it did at the last acknowledged flush, or as one of the
 * writes and zeroings after it left it, and the file below is never written.
 */
class TestCowCrashConsistency
{
    private static final int SIZE = 256 * 1024;
    private static final int BLOCK = 4096;
    private static final long SEED = Long.decode(System.getProperty("jloop.crash.seed", "0x636f77"));

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final KiocbRunner io = new KiocbRunner();

    /** The simplest case: written, flushed, crashed before anything else is synced. */
    @Test
    void writesAcknowledgedBeforeAFlushSurviveACrash()
            throws Exception
    {
        byte[] original = nonZero(new Random(SEED), SIZE);
        MemoryBackingFile below = below(original);
        PowerCutFiles files = new PowerCutFiles(new Random(SEED));
        Path overlay = dir.resolve("disk.overlay");

        BackingFile crashed = open(below, overlay, files);
        byte[] flushed = nonZero(new Random(SEED + 1), 10_000);
        assertEquals(flushed.length, io.write(crashed, 1000, flushed), "part of a block, then whole blocks, then part of one");
        assertEquals(0, io.fallocate(crashed, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 8 * BLOCK, 2 * BLOCK));
        assertEquals(0, io.fsync(crashed));
        assertEquals(BLOCK, io.write(crashed, 20 * BLOCK, nonZero(new Random(SEED + 2), BLOCK)), "after the flush");
        files.cut();
        discard(crashed);

        files.powerOn();
        byte[] expected = original.clone();
        System.arraycopy(flushed, 0, expected, 1000, flushed.length);
        Arrays.fill(expected, 8 * BLOCK, 10 * BLOCK, (byte) 0);
        try (BackingFile reopened = open(below, overlay, files)) {
            // the write after the flush had a block of its own, whose map entry was never synced
            assertArrayEquals(expected, io.read(reopened, 0, SIZE));
        }
        assertArrayEquals(original, content(below), "the file below");
    }

    /**
     * Many rounds, each a few generations: random writes, zeroings and flushes on one overlay, a power
     * cut at a random write or sync of its files (in the middle of a flush too), then the check of
     * what the reopened overlay reads, which the next generation continues from.
     */
    @Test
    void randomPowerCutsLoseNothingThatWasFlushed()
            throws Exception
    {
        int rounds = Integer.getInteger("jloop.crash.rounds", 40);
        int cutsInFlushes = 0;
        for (int round = 0; round < rounds; round++) {
            cutsInFlushes += round(SEED + round, false) ? 1 : 0;
        }
        assertTrue(cutsInFlushes > rounds / 4, "too few cuts fell inside a flush: " + cutsInFlushes + " of " + rounds + " rounds");
    }

    /** The checker is not blind: an overlay file whose syncs make nothing durable loses flushed writes, and is caught. */
    @Test
    void checkerCatchesAnOverlayWhoseSyncsAreLies()
    {
        AssertionError caught = assertThrows(AssertionError.class, () -> {
            for (int round = 0; round < 40; round++) {
                round(SEED + 1000 + round, true);
            }
        });
        assertTrue(caught.getMessage().contains("which neither the last flush left nor a change after it wrote"), caught.getMessage());
    }

    /** Returns whether some cut of this round fell inside a flush. */
    private boolean round(long seed, boolean dataSyncLies)
            throws Exception
    {
        Random random = new Random(seed);
        byte[] original = nonZero(random, SIZE);
        MemoryBackingFile below = below(original);
        Path overlay = dir.resolve("round-" + seed + ".overlay");
        PowerCutFiles files = new PowerCutFiles(random, path -> dataSyncLies && path.equals(overlay));
        byte[] durable = original.clone();
        boolean cutInFlush = false;
        BackingFile file = open(below, overlay, files);
        for (int generation = 0; generation < 4; generation++) {
            byte[] current = durable.clone();
            List<Change> sinceFlush = new ArrayList<>();
            files.cutAfter(random.nextInt(60));
            for (int op = 0; op < 40 && files.isOn(); op++) {
                int choice = random.nextInt(10);
                if (choice < 5) {
                    int pos = random.nextBoolean() ? random.nextInt(SIZE / BLOCK) * BLOCK : random.nextInt(SIZE);
                    int length = Math.min(SIZE - pos, random.nextBoolean() ? 1 + random.nextInt(600) : 1 + random.nextInt(5 * BLOCK));
                    byte[] data = nonZero(random, length);
                    // a failed write may still have changed some of what it covers
                    sinceFlush.add(new Change(pos, data, length));
                    if (io.write(file, pos, data) == length) {
                        System.arraycopy(data, 0, current, pos, length);
                    }
                }
                else if (choice < 7) {
                    int pos = random.nextInt(SIZE);
                    int length = Math.min(SIZE - pos, 1 + random.nextInt(4 * BLOCK));
                    int mode = random.nextBoolean() ? Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE : Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE;
                    sinceFlush.add(new Change(pos, null, length));
                    if (io.fallocate(file, mode, pos, length) == 0) {
                        Arrays.fill(current, pos, pos + length, (byte) 0);
                    }
                }
                else if (choice < 9) {
                    boolean before = files.isOn();
                    if (io.fsync(file) == 0) {
                        durable = current.clone();
                        sinceFlush.clear();
                    }
                    else {
                        cutInFlush |= before;
                    }
                }
                else if (files.isOn()) {
                    int pos = random.nextInt(SIZE);
                    int length = Math.min(SIZE - pos, 1 + random.nextInt(3 * BLOCK));
                    byte[] read = io.read(file, pos, length);
                    assertArrayEquals(Arrays.copyOfRange(current, pos, pos + length), read, "seed " + seed + ": read at " + pos + " before the cut");
                }
            }
            files.cut();
            discard(file);
            files.powerOn();
            file = open(below, overlay, files);
            byte[] survived = io.read(file, 0, SIZE);
            check(seed, generation, durable, sinceFlush, survived);
            durable = survived;
        }
        file.close();
        assertArrayEquals(original, content(below), "seed " + seed + ": the file below was written");
        return cutInFlush;
    }

    private static void check(long seed, int generation, byte[] durable, List<Change> sinceFlush, byte[] survived)
    {
        for (int pos = 0; pos < SIZE; pos++) {
            if (survived[pos] == durable[pos]) {
                continue;
            }
            boolean written = false;
            for (Change change : sinceFlush) {
                if (change.covers(pos) && change.value(pos) == survived[pos]) {
                    written = true;
                    break;
                }
            }
            if (!written) {
                fail("seed " + seed + ", generation " + generation + ": after the cut the byte at " + pos + " (block " + pos / BLOCK + ") reads "
                        + survived[pos] + ", which neither the last flush left nor a change after it wrote (" + sinceFlush.size() + " changes since)");
            }
        }
    }

    /** A write ({@code data}) or a zeroing ({@code data} null) of {@code [pos, pos + length)}. */
    private record Change(int pos, byte[] data, int length)
    {
        boolean covers(int at)
        {
            return at >= pos && at < pos + length;
        }

        byte value(int at)
        {
            return data == null ? 0 : data[at - pos];
        }
    }

    private BackingFile open(MemoryBackingFile below, Path overlay, PowerCutFiles files)
            throws IOException
    {
        BackingFile kept = new ForwardingBackingFile(below)
        {
            @Override
            public void close() {}
        };
        return new CowBackingFile(kept, CowOverlay.open(overlay, SIZE, BLOCK, true, files::open), false, overlay.getFileName().toString());
    }

    /**
     * Lets go of a filter after the cut. Its files died with the power, so closing it can no longer
     * write anything (its flush fails): it only ends its threads, as the end of the process would.
     */
    private static void discard(BackingFile crashed)
    {
        assertThrows(IOException.class, crashed::close, "closing after the cut wrote to a file the power cut had closed");
    }

    private static MemoryBackingFile below(byte[] content)
    {
        MemoryBackingFile below = MemoryBackingFile.builder(SIZE).build();
        below.write(0, content);
        return below;
    }

    private static byte[] content(MemoryBackingFile file)
    {
        byte[] bytes = new byte[SIZE];
        file.read(0, bytes);
        return bytes;
    }

    private static byte[] nonZero(Random random, int length)
    {
        byte[] bytes = new byte[length];
        random.nextBytes(bytes);
        for (int i = 0; i < length; i++) {
            bytes[i] |= 1;
        }
        return bytes;
    }
}
