package dev.jloop.loop;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Bio;
import dev.jloop.api.Capabilities;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.IovecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import dev.jloop.loop.stats.DeviceStats;
import dev.jloop.loop.stats.LatencyHistogram;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.RecordingBackingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.ToLongFunction;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestLoopDevice
{
    private static final int SIZE = 8 << 20;
    private static final Capabilities PARALLEL = Capabilities.builder()
            .flush(true).trim(true).zero(true).extents(true).multiConn(true).build();

    private final AioKernel aio = new AioKernel();
    private final PagePool pool = new PagePool(64 << 20);
    private final List<LoopDevice> devices = new ArrayList<>();

    @AfterEach
    void checkLeaks()
            throws Exception
    {
        for (LoopDevice device : devices) {
            device.close();
        }
        assertEquals(0, aio.inFlight(), "kiocbs in flight");
        assertEquals(0, aio.allocated(), "kiocbs leaked");
        assertEquals(0, pool.usedBytes(), "pages leaked");
    }

    private LoopDevice device(BackingFile file)
    {
        LoopDevice device = new LoopDevice(file, aio, "test");
        devices.add(device);
        return device;
    }

    private static RecordingBackingFile file(MemoryBackingFile memory, Capabilities capabilities)
    {
        return new RecordingBackingFile(memory, capabilities, false);
    }

    /** Submits a bio and waits for its end-io; returns the error. */
    private static int run(LoopDevice device, Bio.Op op, long offset, long length, int flags, IovIter iter)
            throws Exception
    {
        CompletableFuture<Integer> done = new CompletableFuture<>();
        AtomicInteger ends = new AtomicInteger();
        Bio bio = new Bio().init(op, offset, length, flags, iter).setEndIo((b, error) -> {
            ends.incrementAndGet();
            done.complete(error);
        }, null);
        device.submit(bio);
        int error = done.get(30, TimeUnit.SECONDS);
        assertEquals(1, ends.get(), "end-io ran exactly once");
        return error;
    }

    private int write(LoopDevice device, long offset, byte[] data, int flags)
            throws Exception
    {
        Page[] pages = new Page[PagePool.maxPages(data.length)];
        int n = pool.allocate(data.length, pages);
        try {
            BvecIter iter = new BvecIter().reset(IovIter.Direction.SOURCE, pages, n, data.length);
            iter.copyToIter(data, 0, data.length);
            iter.revert(data.length);
            return run(device, Bio.Op.WRITE, offset, data.length, flags, iter);
        }
        finally {
            pool.free(pages, n);
        }
    }

    private byte[] read(LoopDevice device, long offset, int length)
            throws Exception
    {
        Page[] pages = new Page[PagePool.maxPages(length)];
        int n = pool.allocate(length, pages);
        try {
            BvecIter iter = new BvecIter().reset(IovIter.Direction.DEST, pages, n, length);
            assertEquals(0, run(device, Bio.Op.READ, offset, length, 0, iter));
            assertEquals(0, iter.count(), "read consumed the whole iterator");
            iter.revert(length);
            byte[] data = new byte[length];
            iter.copyFromIter(data, 0, length);
            return data;
        }
        finally {
            pool.free(pages, n);
        }
    }

    private static byte[] random(int length, long seed)
    {
        byte[] data = new byte[length];
        new Random(seed).nextBytes(data);
        return data;
    }

    @Test
    void countsEveryRequestOnceWithItsBytesErrorsAndLatency()
            throws Exception
    {
        LoopDevice device = device(file(new MemoryBackingFile(SIZE), PARALLEL));
        for (int i = 0; i < 3; i++) {
            assertEquals(0, write(device, i * 8192L, new byte[8192], 0));
        }
        read(device, 0, 4096);
        read(device, 4096, 512);
        assertEquals(0, run(device, Bio.Op.DISCARD, 0, 65536, 0, null));
        assertEquals(0, run(device, Bio.Op.WRITE_ZEROES, 65536, 4096, 0, null));
        assertEquals(0, run(device, Bio.Op.FLUSH, 0, 0, 0, null));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.DISCARD, SIZE, 4096, 0, null));

        DeviceStats stats = device.stats();
        assertEquals(3, stats.op(Bio.Op.WRITE).completed());
        assertEquals(3 * 8192, stats.op(Bio.Op.WRITE).bytes());
        assertEquals(2, stats.op(Bio.Op.READ).completed());
        assertEquals(4096 + 512, stats.op(Bio.Op.READ).bytes());
        assertEquals(2, stats.op(Bio.Op.DISCARD).completed());
        assertEquals(65536, stats.op(Bio.Op.DISCARD).bytes(), "a failed discard counts no bytes");
        assertEquals(1, stats.op(Bio.Op.DISCARD).errors());
        assertEquals(1, stats.op(Bio.Op.DISCARD).errors(Errno.EINVAL));
        assertEquals(1, stats.op(Bio.Op.WRITE_ZEROES).completed());
        assertEquals(4096, stats.op(Bio.Op.WRITE_ZEROES).bytes());
        assertEquals(1, stats.op(Bio.Op.FLUSH).completed());
        assertEquals(0, stats.op(Bio.Op.FLUSH).bytes());
        assertEquals(0, stats.op(Bio.Op.CACHE).completed());
        for (Bio.Op op : Bio.Op.values()) {
            LatencyHistogram.Snapshot latency = stats.op(op).latency();
            assertEquals(stats.op(op).completed(), latency.count(), op + ": one latency per request");
            assertTrue(latency.sum() >= 0 && latency.max() <= latency.sum(), op + ": " + latency);
        }
        assertEquals(0, device.inFlight());
    }

    @Test
    void writeThenReadBack()
            throws Exception
    {
        LoopDevice device = device(file(new MemoryBackingFile(SIZE), PARALLEL));
        byte[] data = random(3 << 20, 1);
        assertEquals(0, write(device, 12345, data, 0));
        assertArrayEquals(data, read(device, 12345, data.length));
        assertArrayEquals(new byte[12345], read(device, 0, 12345));
    }

    @Test
    void shortTransfersAreResubmitted()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).maxTransfer(1000).build();
        RecordingBackingFile file = file(memory, PARALLEL);
        LoopDevice device = device(file);
        byte[] data = random(100_000, 2);
        assertEquals(0, write(device, 777, data, 0));
        assertArrayEquals(data, read(device, 777, data.length));
        assertTrue(file.ops().stream().filter(op -> op.startsWith("write")).count() >= 100, file.ops().toString());
    }

    /**
     * Where the rest of a short transfer goes: at pos + res, with what is left of the iterator, also
     * when the file completes on its own threads and the rest is submitted from the device's worker.
     */
    @Test
    void shortTransfersCompletedOnTheFilesThreadsAreResubmittedAtPosPlusResult()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).queued(2).maxTransfer(1000).build();
        RecordingBackingFile file = file(memory, PARALLEL);
        LoopDevice device = device(file);
        byte[] data = random(10_500, 10);
        assertEquals(0, write(device, 777, data, 0));
        List<String> expected = new ArrayList<>();
        for (int done = 0; done < data.length; done += 1000) {
            expected.add("write " + (777 + done) + "+" + (data.length - done));
        }
        assertEquals(expected, file.ops());
        assertArrayEquals(data, read(device, 777, data.length));
    }

    /**
     * The short-transfer contract of {@link BackingFile}, with a file that caps every read and write at
     * 1000 bytes: whole requests through the device, one request at a time or many.
     */
    @ParameterizedTest
    @EnumSource(ThreadModel.class)
    void aFileThatCapsEveryTransferServesWholeRequests(ThreadModel threadModel)
            throws Exception
    {
        ShortTransfers file = new ShortTransfers(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().threadModel(threadModel).build(), 1000, SIZE);
        LoopDevice device = device(file);
        byte[] data = random(100_000, 11);
        assertEquals(0, write(device, 4095, data, 0));
        assertArrayEquals(data, read(device, 4095, data.length));
        assertTrue(file.shortResults.get() >= 2 * 99, "short results: " + file.shortResults.get());
    }

    /** A read that returns 0 is at end of file (a file that shrank): the device reads zeros for the rest. */
    @Test
    void aReadThatReachesEndOfFileReadsZerosForTheRest()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(SIZE);
        byte[] data = random(8192, 12);
        memory.write(0, data);
        LoopDevice device = device(new ShortTransfers(memory, PARALLEL, Long.MAX_VALUE, 4096));
        byte[] expected = Arrays.copyOf(Arrays.copyOfRange(data, 100, 4096), 8000);
        assertArrayEquals(expected, read(device, 100, 8000));
        assertArrayEquals(new byte[4096], read(device, 4096, 4096));
    }

    /** A write that returns 0 made no progress: the device fails it instead of resubmitting forever. */
    @Test
    void aWriteThatTransfersNothingFailsWithEio()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(SIZE);
        LoopDevice device = device(new ShortTransfers(memory, PARALLEL, 0, SIZE));
        assertEquals(-Errno.EIO, write(device, 0, random(4096, 13), 0));
        byte[] actual = new byte[4096];
        memory.read(0, actual);
        assertArrayEquals(new byte[4096], actual);
    }

    /** {@link BackingFile#size()} as {@code -errno}: no device of a size it cannot tell. */
    @Test
    void aFileThatReportsNoSizeIsRefused()
    {
        BackingFile sizeless = new ForwardingBackingFile(new MemoryBackingFile(SIZE))
        {
            @Override
            public long size()
            {
                return -Errno.EIO;
            }
        };
        UncheckedIOException e = assertThrows(UncheckedIOException.class, () -> new LoopDevice(sizeless, aio, "sizeless"));
        assertTrue(e.getMessage().contains("EIO"), e.getMessage());
    }

    @Test
    void outOfRangeAndReadOnly()
            throws Exception
    {
        LoopDevice device = device(file(new MemoryBackingFile(SIZE), PARALLEL));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.READ, SIZE - 10, 20, 0, IovecIter.of(IovIter.Direction.DEST, new byte[20])));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.DISCARD, Long.MAX_VALUE - 5, 4096, 0, null));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.WRITE, -1, 1, 0, IovecIter.of(IovIter.Direction.SOURCE, new byte[1])));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.WRITE, 0, 2, 0, IovecIter.of(IovIter.Direction.SOURCE, new byte[1])),
                "length and iterator disagree");

        Capabilities readOnly = PARALLEL.toBuilder().readOnly(true).build();
        LoopDevice ro = device(file(new MemoryBackingFile(SIZE), readOnly));
        assertEquals(-Errno.EPERM, write(ro, 0, new byte[4096], 0));
        assertEquals(-Errno.EPERM, run(ro, Bio.Op.DISCARD, 0, 4096, 0, null));
        assertEquals(-Errno.EPERM, run(ro, Bio.Op.WRITE_ZEROES, 0, 4096, 0, null));
        assertEquals(0, run(ro, Bio.Op.FLUSH, 0, 0, 0, null));
        assertArrayEquals(new byte[4096], read(ro, 0, 4096));
    }

    /**
     * FUA writes, zeroes and trims each need an fdatasync after their first operation. On a file whose
     * completion thread alone frees slots, a completion that submitted that fdatasync itself would wait
     * for a slot forever: the deep-queue hang of the io_uring backend.
     */
    @ParameterizedTest(name = "queue depth declared: {0}")
    @ValueSource(booleans = {true, false})
    void followUpsOfCompletionsNeverWaitForTheFilesCapacity(boolean declareDepth)
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(SIZE);
        SlottedBackingFile file = new SlottedBackingFile(memory, PARALLEL, 4, declareDepth);
        LoopDevice device = new LoopDevice(file, aio, "slotted");
        devices.add(device);
        int blocks = SIZE / 4096;
        CountDownLatch ended = new CountDownLatch(blocks);
        List<String> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (int i = 0; i < blocks; i++) {
            int block = i;
            Bio bio = new Bio().setEndIo((b, error) -> {
                if (error != 0) {
                    errors.add(b + ": " + Errno.name(error));
                }
                ended.countDown();
            }, null);
            long offset = block * 4096L;
            switch (block % 4) {
                case 0, 3 -> {
                    byte[] data = new byte[4096];
                    Arrays.fill(data, (byte) (block + 1));
                    bio.init(Bio.Op.WRITE, offset, 4096, Bio.REQ_FUA, IovecIter.of(IovIter.Direction.SOURCE, data));
                }
                case 1 -> bio.init(Bio.Op.WRITE_ZEROES, offset, 4096, Bio.REQ_FUA | (block % 8 == 1 ? Bio.REQ_NOUNMAP : 0), null);
                default -> bio.init(Bio.Op.DISCARD, offset, 4096, Bio.REQ_FUA, null);
            }
            device.submit(bio);
        }
        assertTrue(ended.await(30, TimeUnit.SECONDS), ended.getCount() + " of " + blocks + " requests never ended");
        assertEquals(List.of(), errors);
        assertEquals(0, file.submittedFromCompletion.get(), "completions submitted to the file");
        if (declareDepth) {
            assertEquals(0, file.waits.get(), "submitters waited for the file's capacity although it was declared");
        }
        for (int block = 0; block < blocks; block++) {
            byte[] expected = new byte[4096];
            if (block % 4 == 0 || block % 4 == 3) {
                Arrays.fill(expected, (byte) (block + 1));
            }
            byte[] actual = new byte[4096];
            memory.read(block * 4096L, actual);
            assertArrayEquals(expected, actual, "block " + block);
        }
    }

    /**
     * A file that would wait answers a frontend thread's kiocbs ({@link Kiocb#IOCB_NOWAIT}) with
     * {@code -EAGAIN}; the device submits each again from its worker without the flag, and the request
     * ends as if nothing happened. Without the flag {@code -EAGAIN} is an error like any other.
     */
    @Test
    void kiocbsRefusedWithoutWaitingAreSubmittedAgainByTheWorker()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(SIZE);
        List<String> calls = new java.util.concurrent.CopyOnWriteArrayList<>();
        Thread test = Thread.currentThread();
        BackingFile busy = new ForwardingBackingFile(new RecordingBackingFile(memory, PARALLEL, false))
        {
            private long refuseOrPass(Kiocb kiocb, ToLongFunction<Kiocb> pass)
            {
                boolean nowait = (kiocb.flags() & Kiocb.IOCB_NOWAIT) != 0;
                calls.add(kiocb.op() + (nowait ? " nowait" : " may wait") + (Thread.currentThread() == test ? " from the submitter" : " from another thread"));
                return nowait ? -Errno.EAGAIN : pass.applyAsLong(kiocb);
            }

            @Override
            public long readIter(Kiocb kiocb)
            {
                return refuseOrPass(kiocb, super::readIter);
            }

            @Override
            public long writeIter(Kiocb kiocb)
            {
                return refuseOrPass(kiocb, super::writeIter);
            }

            @Override
            public long fsync(Kiocb kiocb)
            {
                return refuseOrPass(kiocb, super::fsync);
            }

            @Override
            public long fallocate(Kiocb kiocb)
            {
                return refuseOrPass(kiocb, super::fallocate);
            }
        };
        LoopDevice device = device(busy);
        byte[] data = random(8192, 5);
        assertEquals(0, write(device, 4096, data, Bio.REQ_FUA));
        assertArrayEquals(data, read(device, 4096, 8192));
        assertEquals(0, run(device, Bio.Op.FLUSH, 0, 0, 0, null));
        assertEquals(0, run(device, Bio.Op.WRITE_ZEROES, 4096, 4096, 0, null));
        assertArrayEquals(new byte[4096], read(device, 4096, 4096));
        for (String op : List.of("WRITE", "READ", "FSYNC", "FALLOCATE")) {
            assertTrue(calls.contains(op + " nowait from the submitter"), op + " was not tried without waiting first: " + calls);
            assertTrue(calls.contains(op + " may wait from another thread"), op + " was not submitted again by the worker: " + calls);
        }
        assertFalse(calls.stream().anyMatch(call -> call.endsWith("may wait from the submitter")), "the submitter's thread was let wait: " + calls);

        // a file that says EAGAIN to a kiocb that may wait fails it: no endless round trips
        LoopDevice stubborn = device(new ForwardingBackingFile(new RecordingBackingFile(new MemoryBackingFile(SIZE), PARALLEL, false))
        {
            @Override
            public long writeIter(Kiocb kiocb)
            {
                return -Errno.EAGAIN;
            }
        });
        assertEquals(-Errno.EAGAIN, write(stubborn, 0, new byte[4096], 0));
    }

    /** The serialised worker's queue has no fixed size: a submitter never blocks, whatever the backlog. */
    @Test
    void aSerialisedDeviceQueuesAnyNumberOfRequestsWithoutBlocking()
            throws Exception
    {
        Capabilities serial = PARALLEL.toBuilder().threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS).build();
        LoopDevice device = device(file(new MemoryBackingFile(SIZE), serial));
        CountDownLatch gate = new CountDownLatch(1);
        int requests = 10_000;
        CountDownLatch ended = new CountDownLatch(requests + 1);
        AtomicInteger errors = new AtomicInteger();
        device.submit(new Bio().init(Bio.Op.FLUSH, 0, 0, 0, null).setEndIo((b, error) -> {
            // holds the worker, as a slow first request would
            try {
                gate.await();
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            ended.countDown();
        }, null));
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), () -> {
            for (int i = 0; i < requests; i++) {
                device.submit(new Bio().init(Bio.Op.FLUSH, 0, 0, 0, null).setEndIo((b, error) -> {
                    if (error != 0) {
                        errors.incrementAndGet();
                    }
                    ended.countDown();
                }, null));
            }
        }, "a submitter blocked behind the serialised worker");
        gate.countDown();
        assertTrue(ended.await(30, TimeUnit.SECONDS), ended.getCount() + " requests never ended");
        assertEquals(0, errors.get());
    }

    /** What the device offers is resolved once, as nbdkit's none / emulate / native. */
    @Test
    void theDeviceStatesWhatItOffersAndHow()
    {
        DeviceCapabilities all = LoopDevice.resolve(PARALLEL.toBuilder().nativeFua(true).cache(true).build());
        assertEquals(DeviceCapabilities.Support.NATIVE, all.fua());
        assertEquals(DeviceCapabilities.Support.NATIVE, all.zero());
        assertEquals(DeviceCapabilities.Support.NATIVE, all.cache());
        assertTrue(all.fastZero() && all.trim() && all.flush() && all.extents() && all.multiConn());

        DeviceCapabilities plain = LoopDevice.resolve(Capabilities.builder().flush(true).build());
        assertEquals(DeviceCapabilities.Support.EMULATED, plain.fua(), "FUA as the write and an fdatasync");
        assertEquals(DeviceCapabilities.Support.EMULATED, plain.zero(), "zeroing by writing zeros");
        assertTrue(plain.fastZero(), "a fast zero fails at once where zeros would be written");
        assertEquals(DeviceCapabilities.Support.NONE, plain.cache());
        assertFalse(plain.trim());

        assertEquals(DeviceCapabilities.Support.NONE, LoopDevice.resolve(Capabilities.builder().build()).fua(), "nothing makes data durable");

        DeviceCapabilities readOnly = LoopDevice.resolve(PARALLEL.toBuilder().readOnly(true).nativeFua(true).build());
        assertTrue(readOnly.readOnly() && readOnly.flush());
        assertEquals(DeviceCapabilities.Support.NONE, readOnly.fua());
        assertEquals(DeviceCapabilities.Support.NONE, readOnly.zero());
        assertFalse(readOnly.trim() || readOnly.fastZero());
    }

    @Test
    void fuaIsWriteThenFdatasyncUnlessNative()
            throws Exception
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = device(file);
        assertEquals(0, write(device, 0, new byte[4096], Bio.REQ_FUA));
        assertEquals(List.of("write 0+4096", "fdatasync"), file.ops());

        RecordingBackingFile nativeFua = file(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().nativeFua(true).build());
        LoopDevice device2 = device(nativeFua);
        assertEquals(0, write(device2, 0, new byte[4096], Bio.REQ_FUA));
        assertEquals(List.of("write 0+4096 dsync"), nativeFua.ops());
    }

    @Test
    void registeredMemoryReachesTheBackingFile()
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = device(file);
        pool.reserve(PagePool.SLAB_SIZE);
        device.registerMemory(pool.slabs());
        assertEquals(List.of("registerMemory 1"), file.ops());
    }

    @Test
    void flushIsFdatasync()
            throws Exception
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = device(file);
        assertEquals(0, run(device, Bio.Op.FLUSH, 0, 0, 0, null));
        assertEquals(List.of("fdatasync"), file.ops());
    }

    @Test
    void discardPunchesAHoleAndIsAdvisory()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(SIZE);
        RecordingBackingFile file = file(memory, PARALLEL);
        LoopDevice device = device(file);
        assertEquals(0, write(device, 0, random(1 << 20, 3), 0));
        assertEquals(0, run(device, Bio.Op.DISCARD, 4096, 65536, 0, null));
        assertEquals("fallocate " + (Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE) + " 4096+65536", file.ops().get(1));
        assertArrayEquals(new byte[65536], read(device, 4096, 65536));
        assertEquals(SIZE, device.size());

        RecordingBackingFile noTrim = new RecordingBackingFile(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().trim(false).build(), false);
        LoopDevice device2 = device(noTrim);
        assertEquals(0, run(device2, Bio.Op.DISCARD, 0, 4096, 0, null));
        assertEquals(List.of(), noTrim.ops(), "no trim capability: nothing to do, success");

        RecordingBackingFile unsupported = new RecordingBackingFile(new MemoryBackingFile(SIZE), PARALLEL, true);
        LoopDevice device3 = device(unsupported);
        assertEquals(0, run(device3, Bio.Op.DISCARD, 0, 4096, 0, null), "EOPNOTSUPP on discard is not an error");
    }

    @Test
    void writeZeroesPunchesOrZeroesInPlace()
            throws Exception
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = device(file);
        assertEquals(0, write(device, 0, random(1 << 20, 4), 0));
        assertEquals(0, run(device, Bio.Op.WRITE_ZEROES, 100, 5000, 0, null));
        assertEquals(0, run(device, Bio.Op.WRITE_ZEROES, 10000, 5000, Bio.REQ_NOUNMAP | Bio.REQ_FUA, null));
        assertEquals(List.of("write 0+1048576",
                "fallocate " + (Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE) + " 100+5000",
                "fallocate " + (Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE) + " 10000+5000",
                "fdatasync"), file.ops());
        byte[] data = read(device, 0, 20000);
        assertArrayEquals(new byte[5000], Arrays.copyOfRange(data, 100, 5100));
        assertArrayEquals(new byte[5000], Arrays.copyOfRange(data, 10000, 15000));
        assertTrue(data[99] != 0 || data[5100] != 0 || data[9999] != 0, "bytes around the zeroed ranges are kept");
    }

    @Test
    void writeZeroesFallsBackToWritingZeros()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(96L << 20);
        RecordingBackingFile file = new RecordingBackingFile(memory, PARALLEL, true);
        LoopDevice device = device(file);
        byte[] data = random(1 << 20, 5);
        assertEquals(0, write(device, 0, data, 0));
        // Large enough that recursion per chunk would be deep: the trampoline keeps it flat.
        assertEquals(0, run(device, Bio.Op.WRITE_ZEROES, 3, (90L << 20) + 5, 0, null));
        byte[] back = read(device, 0, 1 << 20);
        assertEquals(data[0], back[0]);
        assertEquals(data[2], back[2]);
        assertArrayEquals(new byte[(1 << 20) - 3], Arrays.copyOfRange(back, 3, 1 << 20));
        assertTrue(file.ops().stream().filter(op -> op.startsWith("write")).count() >= 90, "zeros were written");
    }

    @Test
    void fastZeroFailsInsteadOfWritingZeros()
            throws Exception
    {
        RecordingBackingFile file = new RecordingBackingFile(new MemoryBackingFile(SIZE), PARALLEL, true);
        LoopDevice device = device(file);
        byte[] data = random(8192, 6);
        assertEquals(0, write(device, 0, data, 0));
        file.ops().clear();
        assertEquals(-Errno.EOPNOTSUPP, run(device, Bio.Op.WRITE_ZEROES, 0, 8192, Bio.REQ_NOFALLBACK | Bio.REQ_NOUNMAP, null));
        assertEquals(List.of("fallocate " + (Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE) + " 0+8192"), file.ops());
        assertArrayEquals(data, read(device, 0, 8192), "a failed fast zero changes nothing");

        // a backend that cannot zero at all fails fast without trying
        RecordingBackingFile noZero = file(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().zero(false).build());
        assertEquals(-Errno.EOPNOTSUPP, run(device(noZero), Bio.Op.WRITE_ZEROES, 0, 4096, Bio.REQ_NOFALLBACK, null));
        assertEquals(List.of(), noZero.ops());
    }

    @Test
    void cacheReadsAheadWhereDeclaredAndIsAdvisoryElsewhere()
            throws Exception
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().cache(true).readOnly(true).build());
        assertEquals(0, run(device(file), Bio.Op.CACHE, 4096, 1 << 20, 0, null));
        assertEquals(List.of("cache 4096+1048576"), file.ops(), "read-ahead is allowed on a read-only device");

        RecordingBackingFile without = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = device(without);
        assertEquals(0, run(device, Bio.Op.CACHE, 0, 4096, 0, null));
        assertEquals(-Errno.EINVAL, run(device, Bio.Op.CACHE, SIZE, 1, 0, null));
        assertEquals(List.of(), without.ops());
    }

    @Test
    void extentsComeFromTheFileWhereDeclared()
            throws Exception
    {
        LoopDevice device = device(file(new MemoryBackingFile(SIZE), PARALLEL));
        assertEquals(0, write(device, 1 << 20, random(8192, 7), 0));
        List<String> extents = new ArrayList<>();
        assertEquals(0, device.extents(0, 4 << 20, (offset, length, type) -> extents.add(offset + "+" + length + ":" + type)));
        int hole = dev.jloop.api.ExtentSink.HOLE | dev.jloop.api.ExtentSink.ZERO;
        assertEquals(List.of("0+1048576:" + hole, "1048576+8192:0", "1056768+3137536:" + hole), extents);
        assertEquals(-Errno.EINVAL, device.extents(SIZE - 1, 2, (offset, length, type) -> true));

        LoopDevice blind = device(file(new MemoryBackingFile(SIZE), PARALLEL.toBuilder().extents(false).build()));
        List<String> all = new ArrayList<>();
        assertEquals(0, blind.extents(10, 100, (offset, length, type) -> all.add(offset + "+" + length + ":" + type)));
        assertEquals(List.of("10+100:0"), all, "a file that cannot tell is all data");
    }

    @Test
    void serialBackendRunsOneRequestAtATimeOnOneWorker()
            throws Exception
    {
        Capabilities serial = PARALLEL.toBuilder().threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS).build();
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), serial);
        LoopDevice device = device(file);
        manyConcurrentRequests(device, 400);
        assertEquals(1, file.maxRunning(), "the baseline takes one request at a time");
        assertTrue(file.threads().stream().allMatch(name -> name.equals("loop-test")), "all on the device's worker: " + new java.util.HashSet<>(file.threads()));
    }

    @Test
    void parallelBackendCompletesEveryBioOnce()
            throws Exception
    {
        MemoryBackingFile memory = MemoryBackingFile.builder(SIZE).queued(4).build();
        RecordingBackingFile file = file(memory, PARALLEL);
        LoopDevice device = device(file);
        manyConcurrentRequests(device, 2000);
    }

    @Test
    void closeFlushesAndClosesTheFile()
            throws Exception
    {
        RecordingBackingFile file = file(new MemoryBackingFile(SIZE), PARALLEL);
        LoopDevice device = new LoopDevice(file, aio, "test");
        assertEquals(0, write(device, 0, new byte[4096], 0));
        device.close();
        assertEquals("fdatasync", file.ops().get(file.ops().size() - 1));
        assertTrue(file.isClosed());
        assertEquals(-Errno.ESHUTDOWN, run(device, Bio.Op.FLUSH, 0, 0, 0, null));
    }

    /** Writes distinct blocks from several threads at once, each bio ended exactly once, then checks them all. */
    private void manyConcurrentRequests(LoopDevice device, int count)
            throws Exception
    {
        int block = 4096;
        ConcurrentHashMap<Integer, Integer> ends = new ConcurrentHashMap<>();
        CountDownLatch done = new CountDownLatch(count);
        AtomicInteger errors = new AtomicInteger();
        Page[][] pages = new Page[count][];
        Thread[] submitters = new Thread[4];
        for (int t = 0; t < submitters.length; t++) {
            int first = t;
            submitters[t] = new Thread(() -> {
                for (int i = first; i < count; i += submitters.length) {
                    pages[i] = new Page[1];
                    try {
                        pool.allocate(block, pages[i]);
                    }
                    catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                    BvecIter iter = new BvecIter().reset(IovIter.Direction.SOURCE, pages[i], 1, block);
                    byte[] data = new byte[block];
                    Arrays.fill(data, (byte) i);
                    iter.copyToIter(data, 0, block);
                    iter.revert(block);
                    int id = i;
                    device.submit(new Bio().init(Bio.Op.WRITE, (long) i * block % SIZE, block, 0, iter).setEndIo((bio, error) -> {
                        if (ends.merge(id, 1, Integer::sum) != 1 || error != 0) {
                            errors.incrementAndGet();
                        }
                        done.countDown();
                    }, null));
                }
            });
            submitters[t].start();
        }
        for (Thread submitter : submitters) {
            submitter.join();
        }
        assertTrue(done.await(60, TimeUnit.SECONDS), "all bios ended");
        assertEquals(0, errors.get(), "every bio ended once, without error");
        assertEquals(count, ends.size());
        for (Page[] p : pages) {
            pool.free(p, 1);
        }
        int checked = Math.min(count, SIZE / block);
        byte[] all = read(device, 0, checked * block);
        for (int i = count - checked; i < count; i++) {
            int at = (int) ((long) i * block % SIZE);
            assertEquals((byte) i, all[at], "block " + i);
        }
    }

    /**
     * Transfers at most {@code cap} bytes per read or write, and reads nothing at or past
     * {@code endOfFile} (a file that shrank), as the contract lets a backend do. It narrows the
     * iterator around the call, so it needs a file that answers at once.
     */
    private static final class ShortTransfers
            extends ForwardingBackingFile
    {
        private final Capabilities capabilities;
        private final long cap;
        private final long endOfFile;
        final AtomicInteger shortResults = new AtomicInteger();

        ShortTransfers(BackingFile delegate, Capabilities capabilities, long cap, long endOfFile)
        {
            super(delegate);
            this.capabilities = capabilities;
            this.cap = cap;
            this.endOfFile = endOfFile;
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return transfer(kiocb, Math.min(cap, endOfFile - kiocb.pos()), super::readIter);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return transfer(kiocb, cap, super::writeIter);
        }

        @Override
        public Capabilities capabilities()
        {
            return capabilities;
        }

        private long transfer(Kiocb kiocb, long most, ToLongFunction<Kiocb> operation)
        {
            IovIter iter = kiocb.iter();
            long count = iter.count();
            if (count <= most) {
                return operation.applyAsLong(kiocb);
            }
            shortResults.incrementAndGet();
            if (most <= 0) {
                return 0;
            }
            iter.truncate(most);
            long res = operation.applyAsLong(kiocb);
            if (res == Kiocb.QUEUED) {
                throw new IllegalStateException("capping transfers needs a file that answers at once");
            }
            iter.reexpand(count - Math.max(res, 0));
            return res;
        }
    }
}
