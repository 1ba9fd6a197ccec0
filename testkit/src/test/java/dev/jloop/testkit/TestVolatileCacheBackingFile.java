package dev.jloop.testkit;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.IovecIter;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a {@link VolatileCacheBackingFile} keeps through a power cut and what it may lose: each case
 * is cut with many seeds, and the content the wrapped file holds afterwards is checked against what
 * a disk with a volatile write cache may show.
 */
class TestVolatileCacheBackingFile
{
    private static final int SECTOR = VolatileCacheBackingFile.DEFAULT_SECTOR_SIZE;
    private static final int SIZE = 64 * SECTOR;
    private static final int CUTS = 64;

    private final AioKernel aio = new AioKernel();

    @AfterEach
    void nothingLeftInFlight()
    {
        assertEquals(0, aio.inFlight(), "kiocbs in flight");
        assertEquals(0, aio.allocated(), "kiocbs not freed");
    }

    @Test
    void writeNotFlushedMayBeLostOrKept()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            assertEquals(SECTOR, write(file, SECTOR, sector(1), 0));
            assertEquals(0, fsync(file));
            assertEquals(SECTOR, write(file, SECTOR, sector(2), 0));
            assertEquals(1, file.cachedSectors());
            file.powerCut(new Random(seed));
            assertEquals(0, file.cachedSectors(), "everything is durable after a cut");
            outcomes.add(sectorValue(memory, 1));
            file.powerOn();
        }
        assertEquals(Set.of((byte) 1, (byte) 2), outcomes, "the write not flushed is lost by some cuts and kept by others");
    }

    @Test
    void flushedWriteSurvives()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
        for (int seed = 0; seed < CUTS; seed++) {
            byte value = (byte) (seed + 1);
            assertEquals(SECTOR, write(file, 3 * SECTOR, sector(value), 0));
            assertEquals(0, fsync(file));
            assertEquals(0, file.cachedSectors());
            assertEquals(0, file.powerCut(new Random(seed)), "nothing to lose");
            assertEquals(value, sectorValue(memory, 3));
            file.powerOn();
        }
    }

    @Test
    void fuaWriteSurvivesWhereNativeFuaIsDeclared()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).nativeFua(true).build();
        assertTrue(file.capabilities().nativeFua());
        for (int seed = 0; seed < CUTS; seed++) {
            byte value = (byte) (seed + 1);
            assertEquals(SECTOR, write(file, 5 * SECTOR, sector(value), Kiocb.IOCB_DSYNC));
            assertEquals(0, file.cachedSectors(), "a FUA write is durable at completion");
            file.powerCut(new Random(seed));
            assertEquals(value, sectorValue(memory, 5));
            file.powerOn();
        }
    }

    @Test
    void fuaWriteMayBeLostWithoutNativeFuaOrWhenTheDiskLies()
            throws Exception
    {
        MemoryBackingFile declaredNot = MemoryBackingFile.builder(SIZE).build();
        assertEquals(Set.of((byte) 1, (byte) 2), fuaOutcomes(declaredNot, VolatileCacheBackingFile.builder(declaredNot).nativeFua(false).build()),
                "without native FUA declared, IOCB_DSYNC is not asked for and does nothing");
        MemoryBackingFile lying = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(lying).nativeFua(true).ignoreFua(true).build();
        assertTrue(file.capabilities().nativeFua(), "a lying disk declares what it does not do");
        assertEquals(Set.of((byte) 1, (byte) 2), fuaOutcomes(lying, file));
    }

    private Set<Byte> fuaOutcomes(MemoryBackingFile memory, VolatileCacheBackingFile file)
            throws Exception
    {
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            assertEquals(SECTOR, write(file, 0, sector(1), 0));
            assertEquals(0, fsync(file));
            assertEquals(SECTOR, write(file, 0, sector(2), Kiocb.IOCB_DSYNC));
            file.powerCut(new Random(seed));
            outcomes.add(sectorValue(memory, 0));
            file.powerOn();
        }
        return outcomes;
    }

    @Test
    void flushMakesNothingDurableWhenTheDiskLies()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).ignoreFlush(true).build();
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            assertEquals(SECTOR, write(file, 0, sector((byte) (seed + 1)), 0));
            assertEquals(0, fsync(file), "the lie succeeds");
            assertEquals(1, file.cachedSectors());
            file.powerCut(new Random(seed));
            outcomes.add((byte) (sectorValue(memory, 0) == (byte) (seed + 1) ? 1 : 0));
            file.powerOn();
        }
        assertEquals(Set.of((byte) 0, (byte) 1), outcomes, "flushed writes are lost by some cuts");
    }

    @Test
    void flushCoversOnlyWritesCompletedBeforeItStarted()
            throws Exception
    {
        Set<Byte> later = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            HeldBackingFile held = new HeldBackingFile(MemoryBackingFile.builder(SIZE).build());
            VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(held).build();
            assertEquals(SECTOR, write(file, 0, sector(1), 0));
            held.holdFsync = true;
            CompletableFuture<Long> flush = submit(kiocb -> kiocb.initFsync(file, true));
            // completed after the flush started: not covered by it
            assertEquals(SECTOR, write(file, SECTOR, sector(2), 0));
            held.release();
            assertEquals(0, flush.get(10, TimeUnit.SECONDS));
            file.powerCut(new Random(seed));
            assertEquals(1, sectorValue(held.memory, 0), "a write completed before the flush started is durable");
            later.add(sectorValue(held.memory, 1));
            file.powerOn();
        }
        assertEquals(Set.of((byte) 0, (byte) 2), later, "a write completed after the flush started may be lost");
    }

    @Test
    void flushDoesNotCoverWritesInFlightWhenItStarts()
            throws Exception
    {
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            HeldBackingFile held = new HeldBackingFile(MemoryBackingFile.builder(SIZE).build());
            VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(held).build();
            held.holdWrites = true;
            CompletableFuture<Long> write = submit(kiocb -> kiocb.initRw(Kiocb.Op.WRITE, file, source(sector(7)), 0, 0));
            held.holdWrites = false;
            assertEquals(0, fsync(file));
            held.release();
            assertEquals(SECTOR, write.get(10, TimeUnit.SECONDS));
            file.powerCut(new Random(seed));
            outcomes.add(sectorValue(held.memory, 0));
            file.powerOn();
        }
        assertEquals(Set.of((byte) 0, (byte) 7), outcomes);
    }

    @Test
    void zeroingAndPunchingAreCachedLikeWrites()
            throws Exception
    {
        for (int mode : new int[] {Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE}) {
            MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
            VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
            Set<Byte> outcomes = new HashSet<>();
            for (int seed = 0; seed < CUTS; seed++) {
                assertEquals(8 * SECTOR, write(file, 8 * SECTOR, sectors(9, 8), 0));
                assertEquals(0, fsync(file));
                assertEquals(0, fallocate(file, mode, 10 * SECTOR, SECTOR));
                file.powerCut(new Random(seed));
                outcomes.add(sectorValue(memory, 10));
                assertEquals(9, sectorValue(memory, 9), "outside the range");
                file.powerOn();
            }
            assertEquals(Set.of((byte) 0, (byte) 9), outcomes, "fallocate mode " + mode);

            assertEquals(0, fallocate(file, mode, 10 * SECTOR, SECTOR));
            assertEquals(0, fsync(file));
            file.powerCut(new Random(0));
            assertEquals(0, sectorValue(memory, 10), "flushed zeroes stay");
            file.powerOn();
        }
    }

    @Test
    void eachSectorSurvivesOnItsOwnAndWhole()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
        boolean torn = false;
        for (int seed = 0; seed < CUTS; seed++) {
            assertEquals(16 * SECTOR, write(file, 0, sectors(1, 16), 0));
            assertEquals(0, fsync(file));
            assertEquals(16 * SECTOR, write(file, 0, sectors(2, 16), 0));
            int lost = file.powerCut(new Random(seed));
            byte[] content = new byte[16 * SECTOR];
            memory.read(0, content);
            int kept = 0;
            for (int s = 0; s < 16; s++) {
                byte first = content[s * SECTOR];
                assertTrue(first == 1 || first == 2, "sector " + s + " holds " + first);
                for (int i = 1; i < SECTOR; i++) {
                    assertEquals(first, content[s * SECTOR + i], "sector " + s + " is half one write, half another");
                }
                kept += first == 2 ? 1 : 0;
            }
            assertEquals(16 - kept, lost, "sectors reported lost");
            torn |= kept > 0 && kept < 16;
            file.powerOn();
        }
        assertTrue(torn, "a write across sectors is kept in some and lost in others");
    }

    @Test
    void sectorMayFallBackToAnyVersionSinceItWasDurable()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).nativeFua(true).build();
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < 4 * CUTS; seed++) {
            assertEquals(SECTOR, write(file, 0, sector(1), 0));
            assertEquals(0, fsync(file));
            assertEquals(SECTOR, write(file, 0, sector(2), 0));
            assertEquals(SECTOR, write(file, 0, sector(3), 0));
            assertEquals(SECTOR, write(file, 0, sector(4), 0));
            file.powerCut(new Random(seed));
            outcomes.add(sectorValue(memory, 0));
            file.powerOn();
        }
        assertEquals(Set.of((byte) 1, (byte) 2, (byte) 3, (byte) 4), outcomes);
    }

    @Test
    void fuaWriteBehindCachedOnesIsKeptOverThem()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).nativeFua(true).build();
        Set<String> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            assertEquals(0, fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, SECTOR));
            assertEquals(0, fsync(file));
            // a cached write of the whole sector, then a FUA write of its first half
            assertEquals(SECTOR, write(file, 0, sector(1), 0));
            byte[] half = new byte[SECTOR / 2];
            Arrays.fill(half, (byte) 2);
            assertEquals(half.length, write(file, 0, half, Kiocb.IOCB_DSYNC));
            file.powerCut(new Random(seed));
            byte[] content = new byte[SECTOR];
            memory.read(0, content);
            assertEquals(2, content[0], "the FUA write survives");
            assertEquals(2, content[SECTOR / 2 - 1]);
            outcomes.add(content[SECTOR / 2] + "," + content[SECTOR - 1]);
            file.powerOn();
        }
        assertEquals(Set.of("0,0", "1,1"), outcomes, "the cached write around it may go or stay");
    }

    @Test
    void operationsFailWhileThePowerIsOff()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
        file.powerCut(new Random(1));
        assertFalse(file.poweredOn());
        assertEquals(-Errno.EIO, write(file, 0, sector(1), 0));
        assertEquals(-Errno.EIO, submit(kiocb -> kiocb.initRw(Kiocb.Op.READ, file, IovecIter.of(IovIter.Direction.DEST, new byte[SECTOR]), 0, 0))
                .get(10, TimeUnit.SECONDS));
        assertEquals(-Errno.EIO, fsync(file));
        assertEquals(-Errno.EIO, fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, SECTOR));
        assertEquals(-Errno.EIO, file.extents(0, SIZE, (offset, length, type) -> true));
        assertEquals(0, sectorValue(memory, 0), "nothing reached the file");
        file.powerOn();
        assertEquals(SECTOR, write(file, 0, sector(1), 0));
        assertEquals(0, fsync(file));
        assertEquals(1, sectorValue(memory, 0));
        List<Integer> types = new ArrayList<>();
        assertEquals(0, file.extents(0, SIZE, (offset, length, type) -> types.add(type)));
        assertEquals(ExtentSink.DATA, types.get(0));
    }

    @Test
    void cutWaitsForOperationsInFlightAndFailsThem()
            throws Exception
    {
        Set<Byte> outcomes = new HashSet<>();
        for (int seed = 0; seed < CUTS; seed++) {
            HeldBackingFile held = new HeldBackingFile(MemoryBackingFile.builder(SIZE).queued(1).build());
            VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(held).nativeFua(true).build();
            assertEquals(SECTOR, write(file, 0, sector(3), 0));
            held.holdFsync = true;
            CompletableFuture<Long> flush = submit(kiocb -> kiocb.initFsync(file, true));
            int s = seed;
            CompletableFuture<Integer> cut = CompletableFuture.supplyAsync(() -> {
                try {
                    return file.powerCut(new Random(s));
                }
                catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
            while (file.poweredOn()) {
                Thread.onSpinWait();
            }
            assertEquals(-Errno.EIO, write(file, SECTOR, sector(4), Kiocb.IOCB_DSYNC), "refused once the power is off");
            Thread.sleep(seed == 0 ? 50 : 0);
            assertFalse(cut.isDone(), "the cut waits for the flush in flight");
            held.release();
            assertEquals(-Errno.EIO, flush.get(10, TimeUnit.SECONDS), "a flush cut short fails");
            cut.get(10, TimeUnit.SECONDS);
            outcomes.add(sectorValue(held.memory, 0));
            assertEquals(0, sectorValue(held.memory, 1));
            file.powerOn();
            file.close();
        }
        assertEquals(Set.of((byte) 0, (byte) 3), outcomes, "a flush that failed with the power made nothing durable");
    }

    @Test
    void returnsQueuedWhenTheWrappedFileDoes()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).queued(2).build();
        VolatileCacheBackingFile file = VolatileCacheBackingFile.builder(memory).build();
        AtomicInteger completions = new AtomicInteger();
        CompletableFuture<Long> result = new CompletableFuture<>();
        Kiocb kiocb = new Kiocb(null).initRw(Kiocb.Op.WRITE, file, source(sector(5)), 0, 0).initCallback((k, res) -> {
            completions.incrementAndGet();
            result.complete(res);
        }, null);
        kiocb.markSubmitted();
        assertEquals(Kiocb.QUEUED, file.writeIter(kiocb));
        assertEquals(SECTOR, result.get(10, TimeUnit.SECONDS));
        Thread.sleep(10);
        assertEquals(1, completions.get(), "completed exactly once");
        assertEquals(5, sectorValue(memory, 0));
        file.close();

        MemoryBackingFile synchronous = MemoryBackingFile.builder(SIZE).build();
        VolatileCacheBackingFile direct = VolatileCacheBackingFile.builder(synchronous).build();
        Kiocb now = new Kiocb(null).initRw(Kiocb.Op.WRITE, direct, source(sector(6)), 0, 0).initCallback((k, res) -> completions.incrementAndGet(), null);
        now.markSubmitted();
        assertEquals(SECTOR, direct.writeIter(now), "a result at once stays a result at once");
        assertEquals(1, completions.get(), "and is not completed by the filter");
    }

    @Test
    void capabilitiesPassThroughButNativeFua()
            throws Exception
    {
        Capabilities inner = Capabilities.builder().flush(true).trim(true).zero(false).extents(true).multiConn(true).logicalBlockSize(512).build();
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).capabilities(inner).build();
        assertEquals(inner.toBuilder().nativeFua(true).build().toString(),
                VolatileCacheBackingFile.builder(memory).nativeFua(true).build().capabilities().toString());
        assertEquals(inner.toString(), VolatileCacheBackingFile.builder(memory).build().capabilities().toString());
    }

    // ---------------------------------------------------------------- helpers

    private static byte[] sector(int value)
    {
        return sectors(value, 1);
    }

    private static byte[] sectors(int value, int count)
    {
        byte[] data = new byte[count * SECTOR];
        Arrays.fill(data, (byte) value);
        return data;
    }

    /** The first byte of a sector, after checking the whole sector holds it. */
    private static byte sectorValue(MemoryBackingFile memory, int sector)
    {
        byte[] data = new byte[SECTOR];
        memory.read((long) sector * SECTOR, data);
        byte[] expected = new byte[SECTOR];
        Arrays.fill(expected, data[0]);
        assertArrayEquals(expected, data, "sector " + sector + " holds one version whole");
        return data[0];
    }

    private static IovIter source(byte[] data)
    {
        return IovecIter.of(IovIter.Direction.SOURCE, data);
    }

    private long write(BackingFile file, long pos, byte[] data, int flags)
            throws Exception
    {
        return submit(kiocb -> kiocb.initRw(Kiocb.Op.WRITE, file, source(data), pos, flags)).get(10, TimeUnit.SECONDS);
    }

    private long fsync(BackingFile file)
            throws Exception
    {
        return submit(kiocb -> kiocb.initFsync(file, true)).get(10, TimeUnit.SECONDS);
    }

    private long fallocate(BackingFile file, int mode, long offset, long length)
            throws Exception
    {
        return submit(kiocb -> kiocb.initFallocate(file, mode, offset, length)).get(10, TimeUnit.SECONDS);
    }

    /** Submits through the AioKernel; the future completes with the result, and the kiocb is freed. */
    private CompletableFuture<Long> submit(UnaryOperator<Kiocb> prepare)
    {
        CompletableFuture<Long> result = new CompletableFuture<>();
        Kiocb kiocb = aio.alloc();
        prepare.apply(kiocb).initCallback((k, res) -> {
            aio.free(k);
            if (!result.complete(res)) {
                throw new AssertionError("completed twice: " + k);
            }
        }, null);
        aio.submit(kiocb);
        return result;
    }

    /**
     * A memory file whose fsyncs (and, while {@link #holdWrites}, writes) wait until the test calls
     * {@link #release()}; a held write reaches the memory only then, as a write still in flight.
     */
    private static final class HeldBackingFile
            extends ForwardingBackingFile
    {
        final MemoryBackingFile memory;
        volatile boolean holdFsync;
        volatile boolean holdWrites;
        private final ConcurrentLinkedQueue<Runnable> held = new ConcurrentLinkedQueue<>();

        HeldBackingFile(MemoryBackingFile memory)
        {
            super(memory);
            this.memory = memory;
        }

        void release()
        {
            Runnable next;
            while ((next = held.poll()) != null) {
                next.run();
            }
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            if (!holdWrites) {
                return memory.writeIter(kiocb);
            }
            IovIter iter = kiocb.iter();
            long pos = kiocb.pos();
            byte[] data = new byte[(int) iter.count()];
            iter.copyFromIter(data, 0, data.length);
            held.add(() -> {
                memory.write(pos, data);
                kiocb.complete(data.length);
            });
            return Kiocb.QUEUED;
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            if (!holdFsync) {
                return memory.fsync(kiocb);
            }
            held.add(() -> kiocb.complete(0));
            return Kiocb.QUEUED;
        }
    }
}
