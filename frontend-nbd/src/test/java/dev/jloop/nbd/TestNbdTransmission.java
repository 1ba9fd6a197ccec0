package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.NBD_EINVAL;
import static dev.jloop.nbd.NbdProtocol.NBD_EIO;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOSPC;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOTSUP;
import static dev.jloop.nbd.NbdProtocol.NBD_EPERM;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestNbdTransmission
        extends AbstractNbdServerTest
{
    private static final int MAX_REQUEST = NbdRequestReader.MAX_REQUEST_LENGTH;

    private static byte[] random(Random random, int length)
    {
        byte[] data = new byte[length];
        random.nextBytes(data);
        return data;
    }

    @Test
    void pipelinedWritesAndReadsKeepTheirData()
            throws IOException
    {
        startServer(Map.of());
        Random random = new Random(42);
        int[] lengths = {1, 511, 4096, 4097, 65536, (1 << 20) + 123, 12345, 8192};
        Map<Long, byte[]> written = new HashMap<>();
        Map<Long, Long> offsets = new HashMap<>();
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            long offset = 3;
            for (int i = 0; i < lengths.length; i++) {
                byte[] data = random(random, lengths[i]);
                long cookie = 1000 + i;
                written.put(cookie, data);
                offsets.put(cookie, offset);
                client.sendRequest(0, CMD_WRITE, cookie, offset, data.length, data);
                offset += data.length + 17;
            }
            for (int i = 0; i < lengths.length; i++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error());
                assertTrue(written.containsKey(reply.cookie()));
            }
            for (Map.Entry<Long, byte[]> entry : written.entrySet()) {
                assertArrayEquals(entry.getValue(), disk.read(offsets.get(entry.getKey()), entry.getValue().length));
                client.sendRequest(0, CMD_READ, entry.getKey() + 1000, offsets.get(entry.getKey()), entry.getValue().length);
            }
            for (int i = 0; i < lengths.length; i++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error());
                byte[] expected = written.get(reply.cookie() - 1000);
                assertArrayEquals(expected, client.readData(expected.length));
            }
        }
        server.close();
        assertEquals(0, disk.plugDepth(), "every plug was unplugged");
        assertTrue(disk.submitsUnderPlug() > 0, "requests buffered together were submitted under a plug");
    }

    @Test
    void repliesGoOutInCompletionOrder()
            throws IOException
    {
        startServer(Map.of());
        for (int i = 0; i < 4; i++) {
            disk.write(i * 4096L, new byte[] {(byte) (i + 1), (byte) (i + 1)});
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            disk.holdUntil(4);
            for (int i = 0; i < 4; i++) {
                client.sendRequest(0, CMD_READ, i, i * 4096L, 2);
            }
            for (int expected = 3; expected >= 0; expected--) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(expected, reply.cookie(), "the device completed the newest first");
                assertEquals(0, reply.error());
                assertArrayEquals(new byte[] {(byte) (expected + 1), (byte) (expected + 1)}, client.readData(2));
            }
        }
    }

    @Test
    void requestsOutsideTheExportAreInvalidAndTheConnectionGoesOn()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, DISK_SIZE - 1, 2, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, DISK_SIZE + 1, 0, null));
            // offset + length wraps around 2^64
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, -4096, 8192, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, Long.MAX_VALUE, 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_TRIM, DISK_SIZE, 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_WRITE_ZEROES, -1, 1, null));
            // the spec: writes reaching past the end get ENOSPC
            assertEquals(NBD_ENOSPC, client.roundTrip(0, CMD_WRITE_ZEROES, DISK_SIZE - 1, 2, null));
            assertEquals(NBD_ENOSPC, client.roundTrip(0, CMD_WRITE, DISK_SIZE + 1, 0, new byte[0]));
            byte[] payload = new byte[100_000];
            payload[0] = (byte) CMD_WRITE;
            // the payload is discarded: had it been parsed as requests, the next reply would be wrong
            assertEquals(NBD_ENOSPC, client.roundTrip(0, CMD_WRITE, DISK_SIZE - 10, payload.length, payload));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_WRITE, -8, 16, new byte[16]));
            assertEquals(0, client.roundTrip(0, CMD_WRITE, DISK_SIZE - 2, 2, new byte[] {7, 8}));
            assertArrayEquals(new byte[] {7, 8}, client.read(DISK_SIZE - 2, 2));
            assertTrue(disk.log().stream().noneMatch(op -> op.startsWith("WRITE " + (DISK_SIZE - 10))));
        }
    }

    @Test
    void readOnlyExportRefusesWritesWithEperm()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "ro")) {
            assertEquals(NBD_EPERM, client.roundTrip(0, CMD_WRITE, 0, 5000, new byte[5000]));
            assertEquals(NBD_EPERM, client.roundTrip(0, CMD_TRIM, 0, 4096, null));
            assertEquals(NBD_EPERM, client.roundTrip(0, CMD_WRITE_ZEROES, 0, 4096, null));
            assertEquals(0, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
            assertEquals(5, client.read(0, 5).length);
        }
        assertTrue(readOnlyDisk.log().stream().noneMatch(op -> op.startsWith("WRITE") || op.startsWith("DISCARD")));
    }

    @Test
    void requestsUpTo64MiBAreServedAndLongerOnesRefused()
            throws IOException
    {
        MemoryBlockDevice big = new MemoryBlockDevice(1L << 30, MemoryBlockDevice.allCapabilities());
        startServer(Map.of(), List.of(new Export("big", "", big)));
        try (NbdTestClient client = NbdTestClient.open(address(), "big")) {
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, 0, MAX_REQUEST + 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, 0, 0xffffffffL, null));

            byte[] payload = new byte[MAX_REQUEST + 1];
            payload[MAX_REQUEST] = 9;
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_WRITE, 0, payload.length, payload));
            assertEquals(0, big.read(MAX_REQUEST, 1)[0], "refused write reached the device");

            payload = new byte[MAX_REQUEST];
            payload[MAX_REQUEST - 1] = 9;
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 4096, payload.length, payload));
            client.sendRequest(0, CMD_READ, 77, 4096, MAX_REQUEST);
            NbdTestClient.Reply reply = client.readReply();
            assertEquals(new NbdTestClient.Reply(0, 77), reply);
            client.readFully(payload);
            assertEquals(9, payload[MAX_REQUEST - 1]);
        }
    }

    @Test
    void unknownCommandsAndFlagsAreInvalid()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(NBD_EINVAL, client.roundTrip(0, 9, 0, 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(1 << 6, CMD_CACHE, 0, 1, null));
            // no metadata context (nor structured replies) negotiated
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_BLOCK_STATUS, 0, 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(1 << 7, CMD_READ, 0, 1, null));
            // DF needs structured replies, which were not negotiated
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_DF, CMD_READ, 0, 1, null));
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_NO_HOLE, CMD_WRITE, 0, 1, new byte[1]));
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_FAST_ZERO, CMD_WRITE, 0, 1, new byte[1]));
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_DF | CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE | CMD_FLAG_FUA | 1 << 15, CMD_WRITE_ZEROES, 0, 1, null));
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, 1, new byte[] {3}));
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, 0, new byte[0]));
            assertArrayEquals(new byte[] {3}, client.read(0, 1));
        }
    }

    @Test
    void commandsTheDeviceDoesNotDeclareAreInvalid()
            throws IOException
    {
        MemoryBlockDevice plain = new MemoryBlockDevice(1 << 20, DeviceCapabilities.builder().build());
        startServer(Map.of(), List.of(new Export("plain", "", plain)));
        try (NbdTestClient client = NbdTestClient.open(address(), "plain")) {
            assertEquals(NbdProtocol.FLAG_HAS_FLAGS, client.transmissionFlags);
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_TRIM, 0, 4096, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_WRITE_ZEROES, 0, 4096, null));
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 0, 1, new byte[1]));
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, 1, new byte[1]));
        }
        assertEquals(List.of("WRITE 0 1 flags=0"), plain.log());
    }

    @Test
    void flagsBecomeBioFlags()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 0, 1, new byte[1]));
            assertEquals(0, client.roundTrip(CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, CMD_WRITE_ZEROES, 4096, 8192, null));
            assertEquals(0, client.roundTrip(0, CMD_WRITE_ZEROES, 4096, 10, null));
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_TRIM, 0, 4096, null));
            assertEquals(0, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
        }
        assertEquals(List.of(
                        "WRITE 0 1 flags=" + Bio.REQ_FUA,
                        "WRITE_ZEROES 4096 8192 flags=" + (Bio.REQ_FUA | Bio.REQ_NOUNMAP),
                        "WRITE_ZEROES 4096 10 flags=0",
                        "DISCARD 0 4096 flags=" + Bio.REQ_FUA,
                        "FLUSH 0 0 flags=0"),
                disk.log());
    }

    /** The spec: once FUA is negotiated the server MUST accept it on every command, if only by ignoring it. */
    @Test
    void fuaIsAcceptedOnEveryCommand()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 0, 1, new byte[] {7}));
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_FLUSH, 0, 0, null), "FLUSH with FUA, as older qemu sends it");
            assertArrayEquals(new byte[] {7}, client.read(CMD_FLAG_FUA, 0, 1), "READ with FUA");
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_CACHE, 0, 4096, null), "CACHE with FUA");
        }
        assertEquals(List.of("WRITE 0 1 flags=" + Bio.REQ_FUA, "FLUSH 0 0 flags=0", "READ 0 1 flags=0", "CACHE 0 4096 flags=0"),
                disk.log());
    }

    @Test
    void fuaIsRefusedWhereItWasNotNegotiated()
            throws IOException
    {
        MemoryBlockDevice plain = new MemoryBlockDevice(1 << 20, DeviceCapabilities.builder().build());
        startServer(Map.of(), List.of(new Export("plain", "", plain)));
        try (NbdTestClient client = NbdTestClient.open(address(), "plain")) {
            assertEquals(0, client.transmissionFlags & NbdProtocol.FLAG_SEND_FUA);
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_FUA, CMD_READ, 0, 1, null));
        }
    }

    @Test
    void deviceErrorsBecomeNbdErrors()
            throws IOException
    {
        startServer(Map.of());
        int[][] cases = {
                {Errno.ENOSPC, NBD_ENOSPC},
                {Errno.EIO, NBD_EIO},
                {Errno.EPERM, NBD_EPERM},
                {Errno.EROFS, NBD_EPERM},
                {Errno.ENOTSUP, NBD_ENOTSUP},
                {Errno.ENOENT, NBD_EIO},
                {Errno.EBADF, NBD_EIO},
        };
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (int[] c : cases) {
                disk.failWith(c[0]);
                assertEquals(c[1], client.roundTrip(0, CMD_WRITE, 0, 3, new byte[3]), Errno.name(c[0]));
                // a failed READ has no payload: the next reply must follow the header at once
                assertEquals(c[1], client.roundTrip(0, CMD_READ, 0, 3, null), Errno.name(c[0]));
            }
            disk.failWith(0);
            assertEquals(3, client.read(0, 3).length);
        }
    }

    @Test
    void badRequestMagicClosesOnlyThatConnection()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient good = NbdTestClient.open(address(), "disk");
                NbdTestClient bad = NbdTestClient.open(address(), "disk")) {
            bad.sendRaw(new byte[28]);
            assertTrue(bad.isClosedByServer());
            assertEquals(0, good.roundTrip(0, CMD_WRITE, 0, 2, new byte[] {1, 2}));
            assertArrayEquals(new byte[] {1, 2}, good.read(0, 2));
        }
    }

    @Test
    void disconnectFinishesRequestsInFlightFirst()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            disk.holdUntil(3);
            for (int i = 0; i < 3; i++) {
                client.sendRequest(0, CMD_WRITE, i, i * 10L, 1, new byte[] {(byte) (i + 1)});
            }
            client.sendRequest(0, CMD_DISC, 99, 0, 0);
            for (int i = 0; i < 3; i++) {
                assertEquals(0, client.readReply().error());
            }
            assertTrue(client.isClosedByServer());
        }
        assertArrayEquals(new byte[] {3}, disk.read(20, 1));
    }

    @Test
    void stalledClientDoesNotStallOthers()
            throws IOException
    {
        startServer(Map.of(NbdSettings.MAX_INFLIGHT_BYTES, "4M", NbdSettings.CLOSE_TIMEOUT, "200ms"));
        try (NbdTestClient stalled = NbdTestClient.open(address(), "disk");
                NbdTestClient garbage = new NbdTestClient(address())) {
            // far more reply data than socket buffers and the 4 MiB budget hold; never read
            for (int i = 0; i < 256; i++) {
                stalled.sendRequest(0, CMD_READ, i, 0, 1 << 20);
            }
            garbage.sendRaw(random(new Random(1), 4096));

            try (NbdTestClient other = NbdTestClient.open(address(), "disk")) {
                byte[] data = random(new Random(2), 1 << 20);
                assertEquals(0, other.roundTrip(0, CMD_WRITE, 4096, data.length, data));
                assertArrayEquals(data, other.read(4096, data.length));
            }
            // The other connection's last reply may reach the client before its server thread gives
            // the pages back; the stalled client's pages never come back while it is stalled.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (pagePool.usedBytes() > 4 << 20 && System.nanoTime() < deadline) {
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
            }
            assertTrue(pagePool.usedBytes() <= 4 << 20, "the stalled client holds more than its budget: " + pagePool.usedBytes());
            // closing must not wait for the stalled client forever, nor leak its pages (checked after the test)
            server.close();
        }
    }

    @Test
    void closeWithClientsConnectedEndsThem()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient idle = NbdTestClient.open(address(), "disk");
                NbdTestClient negotiating = new NbdTestClient(address())) {
            negotiating.readGreeting();
            assertEquals(0, idle.roundTrip(0, CMD_WRITE, 0, 1, new byte[1]));
            server.close();
            assertTrue(idle.isClosedByServer());
            assertTrue(negotiating.isClosedByServer());
        }
    }
}
