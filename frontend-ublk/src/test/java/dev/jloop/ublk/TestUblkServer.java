package dev.jloop.ublk;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.Bio;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.Capabilities;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.StillServingException;
import dev.jloop.backend.iouring.IoUringBackendFactory;
import dev.jloop.backend.iouring.IoUringBackingFile;
import dev.jloop.loop.LoopDevice;
import dev.jloop.posix.Errors;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The server against {@link FakeUblkDriver}: bring-up, scripted requests, abort and teardown. */
class TestUblkServer
{
    private static final int DEPTH = 4;
    private static final int BUFFER = 64 << 10;
    private static final long SIZE = 8 << 20;

    private final FakeUblkDriver driver = new FakeUblkDriver();
    private MemoryBackingFile file;
    private LoopDevice device;
    private UblkServer server;

    @BeforeEach
    void setUp()
    {
        file = MemoryBackingFile.builder(SIZE).queued(2).build();
        device = new LoopDevice(file, new AioKernel(), "memory");
    }

    @AfterEach
    void tearDown()
            throws IOException
    {
        if (server != null) {
            server.close();
        }
        device.close();
        assertFalse(driver.charDeviceOpen(), "character device left open");
        assertNoQueueThreads();
    }

    private static UblkServer.Config config(int queues, int devId)
    {
        return new UblkServer.Config(queues, DEPTH, devId, BUFFER, Duration.ofSeconds(5), Duration.ofSeconds(5));
    }

    private UblkServer start(int queues)
            throws IOException
    {
        server = UblkServer.start(driver, config(queues, -1), device);
        return server;
    }

    private static void assertNoQueueThreads()
    {
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("ublk-queue-"))) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("ublk queue threads left running");
            }
            Thread.onSpinWait();
        }
    }

    @Test
    void bringUpSendsTheCommandsInOrderWithTheirStructs()
            throws Exception
    {
        start(1);
        assertEquals("/dev/ublkb0", server.uri());
        assertEquals(List.of("open-control", "GET_FEATURES", "ADD_DEV", "SET_PARAMS", "open-char 0", "map 0", "START_DEV"),
                driver.events());
        assertEquals(List.of(0x80207513, 0xc0207504, 0xc0207508, 0xc0207506), driver.controlOps);

        // ADD_DEV: dev_id -1 in both the command and the info, queue_id 0xffff, len 64
        ByteBuffer add = ByteBuffer.wrap(driver.controlCommands.get(1)).order(ByteOrder.nativeOrder());
        assertEquals(-1, add.getInt(0));
        assertEquals(0xffff, add.getShort(4) & 0xffff);
        assertEquals(64, add.getShort(6));
        assertNotEquals(0, add.getLong(8));
        ByteBuffer info = ByteBuffer.wrap(driver.addDevInfo).order(ByteOrder.nativeOrder());
        assertEquals(1, info.getShort(0));
        assertEquals(DEPTH, info.getShort(2));
        assertEquals(BUFFER, info.getInt(8));
        assertEquals(-1, info.getInt(12));
        assertEquals(UblkCmd.F_CMD_IOCTL_ENCODE | UblkCmd.F_USER_RECOVERY | UblkCmd.F_USER_RECOVERY_REISSUE, info.getLong(24));

        // SET_PARAMS for device 0: 512-byte blocks, cache and FUA, discard and write-zeroes
        ByteBuffer setParams = ByteBuffer.wrap(driver.controlCommands.get(2)).order(ByteOrder.nativeOrder());
        assertEquals(0, setParams.getInt(0));
        assertEquals(UblkCmd.PARAMS_SIZE, setParams.getShort(6));
        ByteBuffer params = ByteBuffer.wrap(driver.params).order(ByteOrder.nativeOrder());
        assertEquals(UblkCmd.PARAM_TYPE_BASIC | UblkCmd.PARAM_TYPE_DISCARD, params.getInt(4));
        assertEquals(UblkCmd.ATTR_VOLATILE_CACHE | UblkCmd.ATTR_FUA, params.getInt(8));
        assertEquals(9, params.get(12));
        assertEquals(BUFFER >> 9, params.getInt(16));
        assertEquals(SIZE >> 9, params.getLong(24));
        assertEquals((int) (0xffffffffL >> 9), params.getInt(48));
        assertEquals(1, params.getShort(56));

        // START_DEV carries our pid; every tag was fetched first, with the ioctl FETCH_REQ, from one thread
        assertEquals(ProcessHandle.current().pid(), driver.startPid);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        List<long[]> fetches = queue.submitted();
        assertEquals(DEPTH, fetches.size());
        Set<Long> addresses = new java.util.HashSet<>();
        for (int tag = 0; tag < DEPTH; tag++) {
            assertEquals(0xc0107520, (int) fetches.get(tag)[0]);
            assertEquals(tag, fetches.get(tag)[2]);
            assertEquals(0, fetches.get(tag)[3]);
            assertEquals(0, fetches.get(tag)[4] % 4096, "buffer page-aligned");
            addresses.add(fetches.get(tag)[4]);
            assertTrue(queue.isFetched(tag));
        }
        assertEquals(DEPTH, addresses.size(), "one buffer per tag");
        assertEquals("ublk-queue-0", queue.owner().getName());
    }

    @Test
    void writeThenReadBackThroughTheBackend()
            throws Exception
    {
        start(1);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        byte[] data = new byte[16 << 10];
        new Random(1).nextBytes(data);
        queue.request(2, UblkCmd.OP_WRITE, 64, data.length >> 9, data);
        assertEquals(data.length, queue.awaitCommit(2));
        byte[] onFile = new byte[data.length];
        file.read(64 << 9, onFile);
        assertArrayEquals(data, onFile);

        queue.request(3, UblkCmd.OP_READ, 64, data.length >> 9, null);
        assertEquals(data.length, queue.awaitCommit(3));
        assertArrayEquals(data, queue.buffer(3, data.length));
        // COMMIT_AND_FETCH re-fetched both tags with their own buffers
        assertTrue(queue.isFetched(2));
        assertTrue(queue.isFetched(3));
        assertTrue(queue.rejected().isEmpty(), "the driver refused a command");
        long commits = queue.submitted().stream().filter(sqe -> (int) sqe[0] == 0xc0107521).count();
        assertEquals(2, commits);
    }

    /**
     * Over the io_uring backend the queue lends its ring to the file: the file's reads, FUA writes,
     * flushes, discards and zeroings go on the queue's ring (here the real ring beside the fake's
     * commands) and never on the file's own; every result and byte as over any other file.
     */
    @Test
    void theQueueLendsItsRingToAnIoUringFile(@TempDir(factory = TargetTempDirFactory.class) Path dir)
            throws Exception
    {
        CiAssumptions.assumeAvailable(IoUring.isAvailable(), "io_uring unavailable: " + IoUring.unavailabilityCause());
        byte[] content = new byte[(int) SIZE];
        new Random(3).nextBytes(content);
        Path path = dir.resolve("disk");
        Files.write(path, content);
        device.close();
        IoUringBackingFile uringFile = (IoUringBackingFile) new IoUringBackendFactory().open(new BackendConfig(path, false, false, 16, Map.of()));
        device = new LoopDevice(uringFile, new AioKernel(), "uring");
        start(1);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);

        byte[] data = new byte[BUFFER];
        new Random(4).nextBytes(data);
        queue.request(0, UblkCmd.OP_WRITE | UblkCmd.IO_F_FUA, 64, data.length >> 9, data);
        assertEquals(data.length, queue.awaitCommit(0));
        System.arraycopy(data, 0, content, 64 << 9, data.length);
        queue.request(1, UblkCmd.OP_READ, 32, BUFFER >> 9, null);
        assertEquals(BUFFER, queue.awaitCommit(1));
        assertArrayEquals(Arrays.copyOfRange(content, 32 << 9, (32 << 9) + BUFFER), queue.buffer(1, BUFFER));
        queue.request(2, UblkCmd.OP_FLUSH, 0, 0, null);
        assertEquals(0, queue.awaitCommit(2));
        queue.request(3, UblkCmd.OP_DISCARD, 4096, 128, null);
        assertEquals(0, queue.awaitCommit(3));
        Arrays.fill(content, 4096 << 9, (4096 + 128) << 9, (byte) 0);
        queue.request(0, UblkCmd.OP_WRITE_ZEROES | UblkCmd.IO_F_NOUNMAP, 8192, 16, null);
        assertEquals(0, queue.awaitCommit(0));
        Arrays.fill(content, 8192 << 9, (8192 + 16) << 9, (byte) 0);
        queue.request(1, UblkCmd.OP_READ, 4096 - 32, BUFFER >> 9, null);
        assertEquals(BUFFER, queue.awaitCommit(1));
        assertArrayEquals(Arrays.copyOfRange(content, (4096 - 32) << 9, ((4096 - 32) << 9) + BUFFER), queue.buffer(1, BUFFER));

        assertTrue(queue.realRingSubmits() > 0, "nothing went on the queue's ring");
        assertEquals(0, uringFile.submitCalls(), "the file's own ring was entered");
        assertTrue(queue.rejected().isEmpty(), "the driver refused a command");
        server.close();
        server = null;
        assertArrayEquals(content, Files.readAllBytes(path));
    }

    @Test
    void everyOpAndFlag()
            throws Exception
    {
        start(1);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        byte[] ones = new byte[8192];
        Arrays.fill(ones, (byte) 1);
        queue.request(0, UblkCmd.OP_WRITE | UblkCmd.IO_F_FUA, 0, 16, ones);
        assertEquals(8192, queue.awaitCommit(0));
        queue.request(1, UblkCmd.OP_WRITE, 16, 16, ones);
        assertEquals(8192, queue.awaitCommit(1));

        queue.request(2, UblkCmd.OP_FLUSH, 0, 0, null);
        assertEquals(0, queue.awaitCommit(2));

        queue.request(3, UblkCmd.OP_DISCARD, 0, 8, null);
        assertEquals(0, queue.awaitCommit(3));
        queue.request(0, UblkCmd.OP_WRITE_ZEROES | UblkCmd.IO_F_NOUNMAP, 16, 8, null);
        assertEquals(0, queue.awaitCommit(0));
        byte[] back = new byte[16384];
        file.read(0, back);
        byte[] expected = new byte[16384];
        Arrays.fill(expected, 4096, 8192, (byte) 1);
        Arrays.fill(expected, 12288, 16384, (byte) 1);
        assertArrayEquals(expected, back);

        queue.request(1, UblkCmd.OP_WRITE_SAME, 0, 8, null);
        assertEquals(-Errno.EOPNOTSUPP, queue.awaitCommit(1));
        queue.request(2, 18 /* REPORT_ZONES */, 0, 8, null);
        assertEquals(-Errno.EOPNOTSUPP, queue.awaitCommit(2));
        // beyond the end of the device: the loop device's error goes back as the result
        queue.request(3, UblkCmd.OP_READ, SIZE >> 9, 8, null);
        assertTrue(queue.awaitCommit(3) < 0);
    }

    @Test
    void fuaReachesTheDeviceAsReqFua()
            throws Exception
    {
        List<Bio> seen = new ArrayList<>();
        BlockDevice recording = new ForwardingDevice(device)
        {
            @Override
            public void submit(Bio bio)
            {
                synchronized (seen) {
                    seen.add(new Bio().init(bio.op(), bio.offset(), bio.length(), bio.flags(), null));
                }
                super.submit(bio);
            }
        };
        server = UblkServer.start(driver, config(1, -1), recording);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        queue.request(0, UblkCmd.OP_WRITE | UblkCmd.IO_F_FUA, 8, 8, new byte[4096]);
        assertEquals(4096, queue.awaitCommit(0));
        queue.request(1, UblkCmd.OP_WRITE_ZEROES | UblkCmd.IO_F_NOUNMAP | UblkCmd.IO_F_FUA, 8, 8, null);
        assertEquals(0, queue.awaitCommit(1));
        queue.request(2, UblkCmd.OP_WRITE_ZEROES, 8, 8, null);
        assertEquals(0, queue.awaitCommit(2));
        queue.request(3, UblkCmd.OP_DISCARD | UblkCmd.IO_F_FUA, 8, 8, null);
        assertEquals(0, queue.awaitCommit(3));
        synchronized (seen) {
            assertEquals(Bio.Op.WRITE, seen.get(0).op());
            assertEquals(4096, seen.get(0).offset());
            assertEquals(Bio.REQ_FUA, seen.get(0).flags());
            assertEquals(Bio.REQ_FUA | Bio.REQ_NOUNMAP, seen.get(1).flags());
            assertEquals(0, seen.get(2).flags());
            assertEquals(Bio.Op.DISCARD, seen.get(3).op());
            assertEquals(Bio.REQ_FUA, seen.get(3).flags(), "a FUA discard is durable before it completes");
        }
    }

    @Test
    void manyConcurrentRequestsOnTwoQueues()
            throws Exception
    {
        start(2);
        Random random = new Random(7);
        byte[] image = new byte[1 << 20];
        random.nextBytes(image);
        for (int round = 0; round < 8; round++) {
            for (int q = 0; q < 2; q++) {
                for (int tag = 0; tag < DEPTH; tag++) {
                    int chunk = (round * 8 + q * DEPTH + tag) % 64;
                    byte[] piece = Arrays.copyOfRange(image, chunk * 16384, chunk * 16384 + 16384);
                    driver.queue(q).request(tag, UblkCmd.OP_WRITE, chunk * 32L, 32, piece);
                }
            }
            for (int q = 0; q < 2; q++) {
                for (int tag = 0; tag < DEPTH; tag++) {
                    assertEquals(16384, driver.queue(q).awaitCommit(tag));
                }
            }
        }
        for (int q = 0; q < 2; q++) {
            assertEquals("ublk-queue-" + q, driver.queue(q).owner().getName());
            assertTrue(driver.queue(q).rejected().isEmpty());
        }
        byte[] onFile = new byte[1 << 20];
        file.read(0, onFile);
        assertArrayEquals(image, onFile);
    }

    @Test
    void legacyCommandsWhenTheKernelLacksIoctlEncoding()
            throws Exception
    {
        driver.features = null;
        driver.legacyOnly = true;
        start(1);
        // GET_FEATURES ioctl refused, legacy GET_FEATURES refused (pre-6.5), then legacy numbers throughout
        assertEquals(List.of(0x80207513, 0x13, 0x04, 0x08, 0x06), driver.controlOps);
        long flags = ByteBuffer.wrap(driver.addDevInfo).order(ByteOrder.nativeOrder()).getLong(24);
        assertEquals(0, flags & UblkCmd.F_CMD_IOCTL_ENCODE, "no CMD_IOCTL_ENCODE asked for");
        assertEquals(UblkCmd.F_USER_RECOVERY | UblkCmd.F_USER_RECOVERY_REISSUE, flags, "recovery asked for: before 6.5 nothing says whether it exists");
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        assertTrue(queue.submitted().stream().allMatch(sqe -> sqe[0] == UblkCmd.IO_FETCH_REQ));
        queue.request(0, UblkCmd.OP_WRITE, 0, 8, new byte[4096]);
        assertEquals(4096, queue.awaitCommit(0));
        assertTrue(queue.rejected().isEmpty());
        server.close();
        assertEquals(List.of(0x80207513, 0x13, 0x04, 0x08, 0x06, 0x07, 0x05), driver.controlOps);
    }

    @Test
    void teardownStopsDrainsReleasesThenDeletes()
            throws Exception
    {
        start(2);
        server.close();
        List<String> events = driver.events();
        int stop = events.indexOf("STOP_DEV");
        int closeChar = events.indexOf("close-char");
        int delete = events.indexOf("DEL_DEV_ASYNC");
        assertTrue(stop > events.indexOf("START_DEV"));
        assertTrue(events.indexOf("close-ring 0") > stop && events.indexOf("close-ring 1") > stop, events.toString());
        assertTrue(events.indexOf("unmap 0") > stop && events.indexOf("unmap 1") < closeChar, events.toString());
        assertTrue(closeChar < delete, events.toString());
        assertEquals(List.of("DEL_DEV_ASYNC", "GET_DEV_INFO", "close-control"), events.subList(events.size() - 3, events.size()));
        // every tag ended by the kernel's abort: nothing refused, nothing re-fetched
        for (int q = 0; q < 2; q++) {
            assertTrue(driver.queue(q).rejected().isEmpty());
            for (int tag = 0; tag < DEPTH; tag++) {
                assertFalse(driver.queue(q).isFetched(tag));
            }
        }
        server.close();
        assertEquals(1, driver.events().stream().filter("DEL_DEV_ASYNC"::equals).count(), "close is idempotent");
    }

    @Test
    void requestsInTheBackendAtStopAreFinishedAndCommittedFirst()
            throws Exception
    {
        ConcurrentLinkedQueue<Bio> held = new ConcurrentLinkedQueue<>();
        BlockDevice holding = new ForwardingDevice(device)
        {
            @Override
            public void submit(Bio bio)
            {
                held.add(bio);
            }
        };
        server = UblkServer.start(driver, config(1, -1), holding);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        queue.request(1, UblkCmd.OP_WRITE, 0, 8, new byte[4096]);
        while (held.isEmpty()) {
            Thread.onSpinWait();
        }
        Thread closer = new Thread(server::close);
        closer.start();
        while (!driver.events().contains("STOP_DEV")) {
            Thread.onSpinWait();
        }
        Thread.sleep(100);
        assertFalse(driver.events().contains("close-ring 0"), "the queue must wait for its request in the backend");
        held.poll().endIo(0);
        closer.join(10_000);
        assertFalse(closer.isAlive());
        assertEquals(4096, queue.awaitCommit(1));
        List<String> events = driver.events();
        assertTrue(events.indexOf("close-ring 0") < events.indexOf("DEL_DEV_ASYNC"));
    }

    @Test
    void thePageCacheIsWrittenBackBeforeStopDev()
            throws Exception
    {
        start(2);
        List<byte[]> written = new ArrayList<>();
        Random random = new Random(7);
        for (int i = 0; i < 8; i++) {
            byte[] data = new byte[BUFFER];
            random.nextBytes(data);
            written.add(data);
            driver.dirty.add(new FakeUblkDriver.Dirty((long) i * (BUFFER >> 9), data));
        }
        server.close();
        List<String> events = driver.events();
        int sync = events.indexOf("sync 0");
        assertTrue(sync >= 0, "no sync before STOP_DEV: " + events);
        assertEquals(List.of("sync 0", "writeback 8", "flush 0", "STOP_DEV", "writeback 0"), events.subList(sync, sync + 5));
        for (int i = 0; i < written.size(); i++) {
            byte[] onFile = new byte[BUFFER];
            file.read((long) i * BUFFER, onFile);
            assertArrayEquals(written.get(i), onFile, "range " + i);
        }
    }

    @Test
    void stopDevWritingBackLongerThanTheCommandTimeoutIsWaitedFor()
            throws Exception
    {
        ScheduledExecutorService slow = Executors.newSingleThreadScheduledExecutor();
        try {
            BlockDevice slowDevice = new ForwardingDevice(device)
            {
                @Override
                public void submit(Bio bio)
                {
                    slow.schedule(() -> device.submit(bio), 150, TimeUnit.MILLISECONDS);
                }
            };
            server = UblkServer.start(driver, new UblkServer.Config(1, DEPTH, -1, BUFFER, Duration.ofMillis(400), Duration.ofSeconds(5)), slowDevice);
            // dirtied after the sync: STOP_DEV's own writeback takes 8 x 150 ms, three command timeouts
            List<byte[]> written = new ArrayList<>();
            Random random = new Random(8);
            for (int i = 0; i < 8; i++) {
                byte[] data = new byte[4096];
                random.nextBytes(data);
                written.add(data);
            }
            for (int i = 0; i < written.size(); i++) {
                driver.dirtyAtStop.add(new FakeUblkDriver.Dirty(i * 8L, written.get(i)));
            }
            long start = System.nanoTime();
            server.close();
            assertTrue(System.nanoTime() - start > Duration.ofMillis(1000).toNanos(), "the writeback took its time");
            List<String> events = driver.events();
            assertEquals(List.of("STOP_DEV", "writeback 8"), events.subList(events.indexOf("STOP_DEV"), events.indexOf("STOP_DEV") + 2));
            assertTrue(events.contains("DEL_DEV_ASYNC"), "the id was freed: " + events);
            for (int i = 0; i < written.size(); i++) {
                byte[] onFile = new byte[4096];
                file.read(i * 4096L, onFile);
                assertArrayEquals(written.get(i), onFile, "block " + i);
            }
        }
        finally {
            slow.shutdown();
        }
    }

    @Test
    void whileStopDevIsPendingTheQueuesKeepServing()
            throws Exception
    {
        FakeUblkDriver stuck = new FakeUblkDriver();
        stuck.stopRelease = new java.util.concurrent.CountDownLatch(1);
        UblkServer stuckServer = UblkServer.start(stuck, new UblkServer.Config(1, DEPTH, -1, BUFFER, Duration.ofMillis(300), Duration.ofSeconds(5)), device);
        try {
            long start = System.nanoTime();
            StillServingException e = assertThrows(StillServingException.class, stuckServer::close, "the device's creator must keep it open");
            assertTrue(e.getMessage().contains("STOP_DEV") && e.getMessage().contains("no answer"), e.getMessage());
            assertTrue(System.nanoTime() - start < Duration.ofSeconds(3).toNanos(), "close must not hang on a stuck STOP_DEV");
            assertFalse(stuck.events().contains("close-ring 0"), "queues stopped while STOP_DEV was pending: " + stuck.events());
            assertFalse(stuck.events().stream().anyMatch(event -> event.startsWith("DEL_DEV")));
            // the kernel may still send writeback: it is served
            byte[] data = new byte[4096];
            new Random(9).nextBytes(data);
            stuck.queue(0).request(2, UblkCmd.OP_WRITE, 16, 8, data);
            assertEquals(4096, stuck.queue(0).awaitCommit(2));
            byte[] onFile = new byte[4096];
            file.read(16 << 9, onFile);
            assertArrayEquals(data, onFile);
        }
        finally {
            // STOP_DEV completes: the kernel aborts the tags and the queue thread ends by itself
            stuck.stopRelease.countDown();
        }
        assertTrue(stuckServer.queue(0).awaitExit(5_000));
    }

    @Test
    void commitsPreparedWhenAStoppedQueueEndsAreSubmitted()
            throws Exception
    {
        ConcurrentLinkedQueue<Bio> held = new ConcurrentLinkedQueue<>();
        BlockDevice holding = new ForwardingDevice(device)
        {
            @Override
            public void submit(Bio bio)
            {
                held.add(bio);
            }
        };
        server = UblkServer.start(driver, config(1, -1), holding);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        queue.request(1, UblkCmd.OP_WRITE, 0, 8, new byte[4096]);
        while (held.isEmpty()) {
            Thread.onSpinWait();
        }
        server.queue(0).requestStop();
        Thread.sleep(50);
        assertFalse(server.queue(0).awaitExit(0), "the queue waits for its request in the backend");
        held.poll().endIo(0);
        assertTrue(server.queue(0).awaitExit(5_000));
        assertEquals(4096, queue.awaitCommit(1), "the last commit reached the kernel");
    }

    @Test
    void aQueueThatDiesWithRequestsInTheBackendNeverWakesItsClosedRing()
            throws Exception
    {
        ConcurrentLinkedQueue<Bio> held = new ConcurrentLinkedQueue<>();
        BlockDevice holding = new ForwardingDevice(device)
        {
            @Override
            public void submit(Bio bio)
            {
                held.add(bio);
            }
        };
        server = UblkServer.start(driver, config(1, -1), holding);
        FakeUblkDriver.FakeQueue queue = driver.queue(0);
        queue.request(1, UblkCmd.OP_WRITE, 0, 8, new byte[4096]);
        while (held.isEmpty()) {
            Thread.onSpinWait();
        }
        queue.failSubmit = true;
        queue.request(2, UblkCmd.OP_WRITE, 8, 8, new byte[4096]);
        assertTrue(server.queue(0).awaitExit(5_000));
        assertTrue(server.queue(0).failure().getMessage().contains("io_uring_enter"), String.valueOf(server.queue(0).failure()));
        assertTrue(driver.events().contains("close-ring 0"));
        // the backend finishes after the ring is gone; and a stop request races nothing either
        Bio bio;
        while ((bio = held.poll()) != null) {
            bio.endIo(0);
        }
        server.queue(0).requestStop();
        assertEquals(0, queue.wakeupsAfterClose());
    }

    @Test
    void readOnlyDeviceIsAdvertisedAndRefusesWrites()
            throws Exception
    {
        file = MemoryBackingFile.builder(SIZE).readOnly(true).build();
        device = new LoopDevice(file, new AioKernel(), "ro");
        start(1);
        ByteBuffer params = ByteBuffer.wrap(driver.params).order(ByteOrder.nativeOrder());
        assertEquals(UblkCmd.ATTR_READ_ONLY, params.getInt(8) & UblkCmd.ATTR_READ_ONLY);
        assertEquals(UblkCmd.PARAM_TYPE_BASIC, params.getInt(4));
        driver.queue(0).request(0, UblkCmd.OP_WRITE, 0, 8, new byte[4096]);
        assertEquals(-Errno.EPERM, driver.queue(0).awaitCommit(0));
    }

    @Test
    void paramsFollowCapabilities()
    {
        Capabilities direct = Capabilities.builder().flush(true).trim(false).zero(true).logicalBlockSize(4096).build();
        UblkStructs.Params params = UblkServer.params(LoopDevice.resolve(direct), (1L << 30) + 1000, 512 << 10);
        assertEquals(12, params.logicalBsShift());
        assertEquals(12, params.physicalBsShift());
        assertEquals(1024, params.maxSectors());
        assertEquals((1L << 30) >> 9, params.devSectors(), "a partial last block is left out");
        assertEquals(0, params.maxDiscardSectors(), "no discard without trim");
        assertTrue(params.maxWriteZeroesSectors() > 0);
        assertEquals(UblkCmd.ATTR_VOLATILE_CACHE | UblkCmd.ATTR_FUA, params.attrs());

        Capabilities noFlush = Capabilities.builder().flush(false).trim(true).logicalBlockSize(1).build();
        params = UblkServer.params(LoopDevice.resolve(noFlush), 1 << 20, 64 << 10);
        assertEquals(9, params.logicalBsShift());
        assertEquals(0, params.attrs());
        assertEquals((int) (0xffffffffL >> 9), params.maxDiscardSectors());
        assertTrue(params.maxWriteZeroesSectors() > 0, "the device writes zeros where the file cannot zero");

        Capabilities readOnly = Capabilities.builder().readOnly(true).flush(true).trim(true).zero(true).build();
        params = UblkServer.params(LoopDevice.resolve(readOnly), 1 << 20, 64 << 10);
        assertEquals(UblkCmd.ATTR_READ_ONLY, params.attrs());
        assertEquals(0, params.maxWriteZeroesSectors());
        assertEquals(0, params.maxDiscardSectors());
    }

    @Test
    void explicitIdAndItsConflict()
            throws Exception
    {
        server = UblkServer.start(driver, config(1, 5), device);
        assertEquals("/dev/ublkb5", server.uri());
        assertEquals(5, ByteBuffer.wrap(driver.controlCommands.get(1)).order(ByteOrder.nativeOrder()).getInt(0));
        server.close();
        server = null;

        FakeUblkDriver busy = new FakeUblkDriver();
        busy.addDevResult = -Errors.EEXIST;
        IOException e = assertThrows(IOException.class, () -> UblkServer.start(busy, config(1, 5), device));
        assertTrue(e.getMessage().contains("EEXIST") && e.getMessage().contains("--ublk-id"), e.getMessage());
        assertFalse(busy.events().stream().anyMatch(event -> event.startsWith("DEL_DEV")), "nothing was added, nothing to delete");
        assertEquals("close-control", busy.events().get(busy.events().size() - 1));
    }

    @Test
    void notRootIsSaidPlainly()
    {
        driver.openControlErrno = Errors.EACCES;
        IOException e = assertThrows(IOException.class, () -> UblkServer.start(driver, config(1, -1), device));
        assertTrue(e.getMessage().contains("root"), e.getMessage());
    }

    @Test
    void aHungControlCommandTimesOutAndReleasesTheQueues()
    {
        driver.startHangs = true;
        UblkServer.Config config = new UblkServer.Config(1, DEPTH, -1, BUFFER, Duration.ofMillis(500), Duration.ofMillis(300));
        IOException e = assertThrows(IOException.class, () -> UblkServer.start(driver, config, device));
        assertTrue(e.getMessage().contains("START_DEV") && e.getMessage().contains("no answer"), e.getMessage());
        // the queue threads were told to stop and the character device closed; the control channel
        // is abandoned to the stuck command (DEL_DEV cannot be sent behind it)
        assertFalse(driver.charDeviceOpen());
        assertFalse(driver.events().stream().anyMatch(event -> event.startsWith("DEL_DEV")));
    }

    @Test
    void beforeLinux69DeleteWaitsAndFallsBackToDelDev()
            throws Exception
    {
        driver.asyncDelete = false;
        start(1);
        server.close();
        List<String> events = driver.events();
        assertEquals(List.of("DEL_DEV_ASYNC", "DEL_DEV", "close-control"), events.subList(events.size() - 3, events.size()));
        assertEquals(List.of(0xc0207507, 0x80207514, 0xc0207505), driver.controlOps.subList(driver.controlOps.size() - 3, driver.controlOps.size()));
    }

    @Test
    void aDeviceStillMountedDoesNotHoldTheServerBeforeLinux69()
            throws Exception
    {
        driver.asyncDelete = false;
        driver.referenced = true;
        server = UblkServer.start(driver, new UblkServer.Config(1, DEPTH, -1, BUFFER, Duration.ofMillis(500), Duration.ofSeconds(5)), device);
        long start = System.nanoTime();
        server.close();
        assertTrue(System.nanoTime() - start < Duration.ofSeconds(3).toNanos(), "close waited for the mount");
        assertTrue(driver.events().contains("DEL_DEV"));
    }

    @Test
    void aDeviceStillMountedIsLeftToTheKernel()
            throws Exception
    {
        driver.referenced = true;
        start(1);
        server.close();
        List<String> events = driver.events();
        assertEquals(List.of("DEL_DEV_ASYNC", "GET_DEV_INFO", "close-control"), events.subList(events.size() - 3, events.size()));
    }

    @Test
    void theKernelsQueueCountIsUsed()
            throws Exception
    {
        driver.maxQueues = 1;
        start(3);
        assertEquals(3, ByteBuffer.wrap(driver.addDevInfo).order(ByteOrder.nativeOrder()).getShort(0), "asked for 3");
        assertTrue(driver.events().contains("map 0"));
        assertFalse(driver.events().contains("map 1"));
    }

    @Test
    void manyDeepQueuesGetSmallerBuffers()
            throws Exception
    {
        server = UblkServer.start(driver, new UblkServer.Config(4, 1024, -1, 512 << 10, Duration.ofSeconds(5), Duration.ofSeconds(5)), device);
        ByteBuffer info = ByteBuffer.wrap(driver.addDevInfo).order(ByteOrder.nativeOrder());
        assertEquals(64 << 10, info.getInt(8), "4 x 1024 tags x 64 KiB = 256 MiB");
        ByteBuffer params = ByteBuffer.wrap(driver.params).order(ByteOrder.nativeOrder());
        assertEquals(128, params.getInt(16), "max_sectors follows the buffer");
        driver.queue(3).request(1023, UblkCmd.OP_WRITE, 0, 128, new byte[64 << 10]);
        assertEquals(64 << 10, driver.queue(3).awaitCommit(1023));
    }

    /** A BlockDevice that passes everything on. */
    static class ForwardingDevice
            implements BlockDevice
    {
        private final BlockDevice delegate;

        ForwardingDevice(BlockDevice delegate)
        {
            this.delegate = delegate;
        }

        @Override
        public long size()
        {
            return delegate.size();
        }

        @Override
        public DeviceCapabilities capabilities()
        {
            return delegate.capabilities();
        }

        @Override
        public void submit(Bio bio)
        {
            delegate.submit(bio);
        }

        @Override
        public void close()
        {
        }
    }
}
