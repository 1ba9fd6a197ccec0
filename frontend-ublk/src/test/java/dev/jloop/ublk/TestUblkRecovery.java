package dev.jloop.ublk;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Bio;
import dev.jloop.api.BlockDevice;
import dev.jloop.loop.LoopDevice;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
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
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * User recovery against {@link FakeUblkDriver}: the flags a device is created with, the state file,
 * a server that dies with a write in flight and the next one that takes the device over and gets the
 * write again, and the recoveries that must be refused.
 */
class TestUblkRecovery
{
    private static final int DEPTH = 4;
    private static final int BUFFER = 64 << 10;
    private static final long SIZE = 8 << 20;
    private static final Map<String, String> ORIGIN = Map.of("files", "/srv/disk.img", "backend", "memory", "arguments", "--frontend\nublk\n/srv/disk.img");

    @TempDir(factory = TargetTempDirFactory.class)
    Path states;

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
    }

    private static UblkServer.Config config(int devId, boolean recover)
    {
        return new UblkServer.Config(2, DEPTH, devId, BUFFER, Duration.ofSeconds(5), Duration.ofSeconds(5), true, recover);
    }

    private static long addDevFlags(FakeUblkDriver driver)
    {
        return ByteBuffer.wrap(driver.addDevInfo).order(ByteOrder.nativeOrder()).getLong(24);
    }

    @Test
    void createdWithRecoveryAndReissueAndRecordedInTheStateFile()
            throws Exception
    {
        server = UblkServer.start(driver, config(-1, false), device, states, ORIGIN);
        long recovery = UblkCmd.F_USER_RECOVERY | UblkCmd.F_USER_RECOVERY_REISSUE;
        assertEquals(recovery, addDevFlags(driver) & recovery);
        UblkState state = UblkState.read(states, 0);
        assertEquals(new UblkState(0, ProcessHandle.current().pid(), 2, DEPTH, BUFFER, SIZE, true, ORIGIN), state);
        assertTrue(Files.readString(UblkState.path(states, 0)).contains("origin.files=/srv/disk.img"));
        server.close();
        server = null;
        assertNull(UblkState.read(states, 0), "the state file goes with the device");
        assertTrue(driver.events().contains("DEL_DEV_ASYNC"));
    }

    @Test
    void noRecoveryAndKernelsWithoutIt()
            throws Exception
    {
        server = UblkServer.start(driver, config(-1, false).withRecovery(false, false), device, states, ORIGIN);
        assertEquals(0, addDevFlags(driver) & UblkCmd.F_USER_RECOVERY);
        assertFalse(UblkState.read(states, 0).userRecovery());
        server.close();

        FakeUblkDriver old = new FakeUblkDriver();
        old.features = 0x46L; // a 6.5 kernel built without recovery: not asked for
        server = UblkServer.start(old, config(-1, false), device, states, ORIGIN);
        assertEquals(0, addDevFlags(old) & (UblkCmd.F_USER_RECOVERY | UblkCmd.F_USER_RECOVERY_REISSUE));
        server.close();
        server = null;
    }

    @Test
    void aServerThatDiesIsReplacedAndItsWriteInFlightIsIssuedAgain()
            throws Exception
    {
        ConcurrentLinkedQueue<Bio> held = new ConcurrentLinkedQueue<>();
        BlockDevice holding = new TestUblkServer.ForwardingDevice(device)
        {
            @Override
            public void submit(Bio bio)
            {
                held.add(bio);
            }
        };
        UblkServer dead = UblkServer.start(driver, config(-1, false), holding, states, ORIGIN);
        byte[] data = new byte[16 << 10];
        new Random(3).nextBytes(data);
        driver.queue(1).request(2, UblkCmd.OP_WRITE, 128, data.length >> 9, data);
        while (held.isEmpty()) {
            Thread.onSpinWait();
        }
        driver.crash();
        assertTrue(dead.queue(0).awaitExit(5_000) && dead.queue(1).awaitExit(5_000), "the dead server's queues ended");
        assertEquals(UblkCmd.DEV_QUIESCED, driver.state());
        int before = driver.events().size();

        server = UblkServer.start(driver, config(0, true), device, states, ORIGIN);
        List<String> events = driver.events().subList(before, driver.events().size());
        assertEquals(List.of("open-control", "GET_FEATURES", "GET_DEV_INFO", "START_USER_RECOVERY", "open-char 0"), events.subList(0, 5));
        assertTrue(events.containsAll(List.of("map 0", "map 1")), events.toString());
        assertEquals("END_USER_RECOVERY", events.get(events.size() - 1));
        assertFalse(events.contains("ADD_DEV") || events.contains("SET_PARAMS") || events.contains("START_DEV"), events.toString());
        assertEquals(UblkCmd.DEV_LIVE, driver.state());
        assertEquals(ProcessHandle.current().pid(), driver.startPid, "END_USER_RECOVERY carries the new server's pid");

        // the write the dead server never finished reaches the file through the new one
        assertEquals(1, driver.reissued.size());
        int[] reissued = driver.reissued.get(0);
        assertEquals(1, reissued[0]);
        assertEquals(data.length, driver.queue(1).awaitCommit(reissued[1]));
        byte[] onFile = new byte[data.length];
        file.read(128 << 9, onFile);
        assertArrayEquals(data, onFile);
        // and it serves as any other
        driver.queue(0).request(0, UblkCmd.OP_READ, 128, data.length >> 9, null);
        assertEquals(data.length, driver.queue(0).awaitCommit(0));
        assertArrayEquals(data, driver.queue(0).buffer(0, data.length));
        assertEquals(ProcessHandle.current().pid(), UblkState.read(states, 0).pid());

        server.close();
        server = null;
        assertTrue(driver.events().contains("DEL_DEV_ASYNC"), "a recovered device is deleted at stop like any other");
        assertNull(UblkState.read(states, 0));
    }

    @Test
    void recoverCreatesTheDeviceWhenThereIsNone()
            throws Exception
    {
        server = UblkServer.start(driver, config(3, true), device, states, ORIGIN);
        assertEquals("/dev/ublkb3", server.uri());
        assertTrue(driver.events().containsAll(List.of("GET_DEV_INFO", "ADD_DEV", "START_DEV")));
        assertEquals(3, UblkState.read(states, 3).device());
    }

    @Test
    void recoveryIsRefusedWhenItCannotBeRight()
            throws Exception
    {
        server = UblkServer.start(driver, config(-1, false), device, states, ORIGIN);
        IOException live = assertThrows(IOException.class, () -> UblkServer.start(driver, config(0, true), device, states, ORIGIN));
        assertEquals("ublk device 0 is live, served by pid " + ProcessHandle.current().pid() + ": there is nothing to recover", live.getMessage());
        assertFalse(driver.events().contains("START_USER_RECOVERY"));

        UblkServer dead = server;
        server = null;
        driver.crash();
        assertTrue(dead.queue(0).awaitExit(5_000) && dead.queue(1).awaitExit(5_000));

        Map<String, String> other = Map.of("files", "/srv/other.img", "backend", "memory");
        IOException mismatch = assertThrows(IOException.class, () -> UblkServer.start(driver, config(0, true), device, states, other));
        assertEquals("ublk device 0 does not match its state file " + UblkState.path(states, 0) + ": it serves /srv/disk.img, this server /srv/other.img",
                mismatch.getMessage());

        LoopDevice small = new LoopDevice(MemoryBackingFile.builder(SIZE / 2).build(), new AioKernel(), "small");
        try {
            IOException size = assertThrows(IOException.class, () -> UblkServer.start(driver, config(0, true), small, states, ORIGIN));
            assertTrue(size.getMessage().endsWith("it serves " + SIZE + " bytes, this server " + SIZE / 2), size.getMessage());
        }
        finally {
            small.close();
        }

        UblkServer.Config fewerQueues = new UblkServer.Config(1, DEPTH, 0, BUFFER, Duration.ofSeconds(5), Duration.ofSeconds(5), true, true);
        UblkState state = UblkState.read(states, 0);
        new UblkState(0, state.pid(), 1, DEPTH, BUFFER, SIZE, true, ORIGIN).write(states);
        IOException queues = assertThrows(IOException.class, () -> UblkServer.start(driver, fewerQueues, device, states, ORIGIN));
        assertTrue(queues.getMessage().endsWith("it records 1 queue(s) of depth 4, the kernel has 2 of depth 4"), queues.getMessage());
        state.write(states);

        Files.delete(UblkState.path(states, 0));
        IOException missing = assertThrows(IOException.class, () -> UblkServer.start(driver, config(0, true), device, states, ORIGIN));
        assertEquals("ublk device 0 has no state file " + UblkState.path(states, 0)
                + ": jloop did not make it, or it was removed; delete the device with jloop ublk del 0", missing.getMessage());

        // none of these touched the device: it still waits, and a matching server takes it
        assertFalse(driver.events().contains("START_USER_RECOVERY"));
        assertFalse(driver.events().stream().anyMatch(event -> event.startsWith("DEL_DEV") || event.equals("STOP_DEV")));
        assertEquals(UblkCmd.DEV_QUIESCED, driver.state());
        state.write(states);
        server = UblkServer.start(driver, config(0, true), device, states, ORIGIN);
        assertEquals(UblkCmd.DEV_LIVE, driver.state());
    }

    @Test
    void aKernelRefusalOfStartUserRecoveryLeavesTheDeviceWaiting()
            throws Exception
    {
        UblkServer dead = UblkServer.start(driver, config(-1, false), device, states, ORIGIN);
        driver.crash();
        assertTrue(dead.queue(0).awaitExit(5_000) && dead.queue(1).awaitExit(5_000));
        // the dead server's /dev/ublkcN is still held (a process that has not finished dying)
        driver.openCharDevice(0);
        UblkServer.Config shortWait = new UblkServer.Config(2, DEPTH, 0, BUFFER, Duration.ofSeconds(5), Duration.ofMillis(600), true, true);
        long start = System.nanoTime();
        IOException busy = assertThrows(IOException.class, () -> UblkServer.start(driver, shortWait, device, states, ORIGIN));
        assertTrue(System.nanoTime() - start > Duration.ofMillis(500).toNanos(), "EBUSY is tried again for a while");
        assertTrue(busy.getMessage().contains("START_USER_RECOVERY") && busy.getMessage().contains("has not released /dev/ublkc0"), busy.getMessage());
        assertFalse(driver.events().stream().anyMatch(event -> event.startsWith("DEL_DEV") || event.equals("STOP_DEV")));
        assertEquals(UblkCmd.DEV_QUIESCED, driver.state());
        assertTrue(Files.exists(UblkState.path(states, 0)));
        driver.crash();
    }

    @Test
    void listRecoverableAndDelete()
            throws Exception
    {
        server = UblkServer.start(driver, config(-1, false), device, states, ORIGIN);
        try (UblkDevices devices = new UblkDevices(driver, states, Duration.ofSeconds(5))) {
            List<UblkDevices.Device> listed = devices.list();
            assertEquals(1, listed.size());
            UblkDevices.Device live = listed.get(0);
            assertEquals("live", live.stateText());
            assertEquals(ProcessHandle.current().pid(), live.pid());
            assertEquals(2, live.queues());
            assertEquals("/srv/disk.img", live.recorded().files());
            assertEquals("ublk device 0 is live, served by pid " + ProcessHandle.current().pid() + ": there is nothing to recover",
                    assertThrows(IOException.class, () -> devices.recoverable(0)).getMessage());
            assertEquals("there is no ublk device 1 to recover (jloop ublk list shows the devices)",
                    assertThrows(IOException.class, () -> devices.recoverable(1)).getMessage());
            assertEquals("ublk device 0 is served by pid " + ProcessHandle.current().pid() + ": stop that server (kill -TERM "
                    + ProcessHandle.current().pid() + "), which deletes the device", assertThrows(IOException.class, () -> devices.delete(0)).getMessage());

            UblkServer dead = server;
            server = null;
            driver.crash();
            assertTrue(dead.queue(0).awaitExit(5_000) && dead.queue(1).awaitExit(5_000));
            assertEquals("quiesced, no server", devices.device(0).stateText());
            assertTrue(devices.device(0).waitingForServer());
            // the state file names this process, which is alive: a test's stand-in for a dying server
            assertTrue(assertThrows(IOException.class, () -> devices.recoverable(0)).getMessage().contains("is still running"));
            UblkState state = UblkState.read(states, 0);
            new UblkState(0, Long.MAX_VALUE, 2, DEPTH, BUFFER, SIZE, true, ORIGIN).write(states);
            assertEquals(ORIGIN, devices.recoverable(0).origin());
            Files.delete(UblkState.path(states, 0));
            assertTrue(assertThrows(IOException.class, () -> devices.recoverable(0)).getMessage().contains("has no state file"));
            state.write(states);

            // a stale state file for a device the kernel no longer has is dropped by list
            new UblkState(7, 1, 1, 1, 4096, 1, true, ORIGIN).write(states);
            assertEquals(List.of(0), devices.list().stream().map(UblkDevices.Device::id).toList());
            assertNull(UblkState.read(states, 7));

            devices.delete(0);
            List<String> events = driver.events();
            assertEquals(List.of("STOP_DEV", "writeback 0", "DEL_DEV_ASYNC", "GET_DEV_INFO"), events.subList(events.size() - 4, events.size()));
            assertNull(UblkState.read(states, 0));
            assertEquals(UblkCmd.DEV_DEAD, driver.state());
            assertEquals("there is no ublk device 0", assertThrows(IOException.class, () -> devices.delete(0)).getMessage());
        }
    }

    @Test
    void stateFiles()
            throws Exception
    {
        UblkState state = new UblkState(5, 42, 2, 64, 1 << 19, 1L << 30, true,
                Map.of("arguments", "--frontend\nublk\n--size\n1G\ndisk image.img", "files", "/a b/disk image.img\n/c=d.img", "directory", "/a b"));
        state.write(states);
        assertEquals(state, UblkState.read(states, 5));
        assertEquals("/a b/disk image.img\n/c=d.img", UblkState.read(states, 5).files());
        assertNull(UblkState.read(states, 6));

        Files.writeString(UblkState.path(states, 6), "device=5\npid=1\nqueues=1\nqueue-depth=1\nbuffer-bytes=4096\nsize=1\nuser-recovery=true\n");
        assertEquals("state file " + UblkState.path(states, 6) + " is that of device 5, not 6",
                assertThrows(IOException.class, () -> UblkState.read(states, 6)).getMessage());
        Files.writeString(UblkState.path(states, 6), "device=6\npid=1\nqueues=x\n");
        assertEquals("state file " + UblkState.path(states, 6) + " is malformed: For input string: \"x\"",
                assertThrows(IOException.class, () -> UblkState.read(states, 6)).getMessage());
        Files.writeString(UblkState.path(states, 6), "device=6\npid=1\n");
        assertEquals("state file " + UblkState.path(states, 6) + " lacks 'queues'",
                assertThrows(IOException.class, () -> UblkState.read(states, 6)).getMessage());
        UblkState.delete(states, 5);
        assertNull(UblkState.read(states, 5));
    }
}
