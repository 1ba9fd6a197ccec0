package dev.jloop.nbd;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Export;
import dev.jloop.loop.LoopDevice;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.RecordingBackingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_CAN_MULTI_CONN;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOTSUP;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static dev.jloop.nbd.NbdProtocol.STATE_HOLE;
import static dev.jloop.nbd.NbdProtocol.STATE_ZERO;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The server over a real {@link LoopDevice} on an in-memory file that records what reaches it:
 * multi-conn flush semantics, fast zero, extents and read-ahead as the backing file sees them.
 */
class TestNbdOverLoopDevice
        extends AbstractNbdServerTest
{
    /** A backing file that can do everything. */
    private static final Capabilities FILE = Capabilities.builder()
            .flush(true).nativeFua(true).trim(true).zero(true).multiConn(true).extents(true).cache(true).build();

    private static final long SIZE = 16 << 20;

    private final List<LoopDevice> devices = new ArrayList<>();

    private RecordingBackingFile file(Capabilities capabilities, boolean fallocateUnsupported, int queuedThreads)
    {
        MemoryBackingFile.Builder builder = MemoryBackingFile.builder(SIZE);
        if (queuedThreads > 0) {
            builder.queued(queuedThreads);
        }
        return new RecordingBackingFile(builder.build(), capabilities, fallocateUnsupported);
    }

    private LoopDevice device(RecordingBackingFile file)
    {
        LoopDevice device = new LoopDevice(file, new AioKernel(), "test");
        devices.add(device);
        return device;
    }

    @AfterEach
    void closeDevices()
            throws IOException
    {
        if (server != null) {
            server.close();
        }
        for (LoopDevice device : devices) {
            device.close();
        }
    }

    @Test
    void flushOnOneConnectionFollowsWritesCompletedOnAnother()
            throws IOException
    {
        RecordingBackingFile file = file(FILE, false, 4);
        startServer(Map.of(), List.of(new Export("disk", "", device(file))));
        try (NbdTestClient a = NbdTestClient.open(address(), "disk");
                NbdTestClient b = NbdTestClient.open(address(), "disk")) {
            assertEquals(FLAG_CAN_MULTI_CONN, a.transmissionFlags & FLAG_CAN_MULTI_CONN);
            assertEquals(FLAG_CAN_MULTI_CONN, b.transmissionFlags & FLAG_CAN_MULTI_CONN);
            for (int round = 0; round < 20; round++) {
                long offset = round * 65536L;
                byte[] data = new byte[65536];
                java.util.Arrays.fill(data, (byte) (round + 1));
                assertEquals(0, a.roundTrip(0, CMD_WRITE, offset, data.length, data), "write acknowledged on A");
                int before = file.ops().size();
                assertEquals(0, b.roundTrip(0, CMD_FLUSH, 0, 0, null), "flush acknowledged on B");
                List<String> ops = file.ops();
                int write = ops.lastIndexOf("write " + offset + "+65536");
                int fsync = ops.subList(before, ops.size()).indexOf("fdatasync") + before;
                assertTrue(write >= 0 && fsync >= before && write < fsync,
                        "the backing file saw the fsync of B's flush after A's write: " + ops);
                // and B reads what A wrote
                assertArrayEquals(data, b.read(offset, data.length));
            }
        }
    }

    @Test
    void multiConnOnlyWhereTheBackendSaysSo()
            throws IOException
    {
        Capabilities single = FILE.toBuilder().multiConn(false).build();
        startServer(Map.of(), List.of(new Export("disk", "", device(file(single, false, 0)))));
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.transmissionFlags & FLAG_CAN_MULTI_CONN);
        }
    }

    @Test
    void fastZeroFailsWhereZeroingWouldWriteZeros()
            throws IOException
    {
        RecordingBackingFile file = file(FILE, true, 0);
        startServer(Map.of(), List.of(new Export("disk", "", device(file))));
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(FLAG_SEND_FAST_ZERO, client.transmissionFlags & FLAG_SEND_FAST_ZERO);
            byte[] ones = new byte[8192];
            java.util.Arrays.fill(ones, (byte) 1);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, ones.length, ones));
            file.ops().clear();
            assertEquals(NBD_ENOTSUP, client.roundTrip(CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 0, 8192, null));
            assertTrue(file.ops().stream().noneMatch(op -> op.startsWith("write")), "fast zero wrote: " + file.ops());
            assertArrayEquals(ones, client.read(0, ones.length), "a failed fast zero leaves the data");
            assertEquals(0, client.roundTrip(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 0, 8192, null));
            assertTrue(file.ops().stream().anyMatch(op -> op.startsWith("write 0+")), "plain zeroing falls back to writing: " + file.ops());
            assertArrayEquals(new byte[8192], client.read(0, 8192));
        }
    }

    /** NBD offers what the device offers, emulated or not: the same device as ublk sees. */
    @Test
    void aFileThatCannotZeroOrFuaStillGetsBothFromTheDevice()
            throws IOException
    {
        Capabilities plain = Capabilities.builder().flush(true).build();
        RecordingBackingFile file = file(plain, false, 0);
        startServer(Map.of(), List.of(new Export("disk", "", device(file))));
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            int offered = FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO | FLAG_SEND_FUA;
            assertEquals(offered, client.transmissionFlags & offered);
            assertEquals(0, client.transmissionFlags & (FLAG_SEND_TRIM | FLAG_SEND_CACHE));
            byte[] ones = new byte[4096];
            java.util.Arrays.fill(ones, (byte) 1);
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 0, ones.length, ones));
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE_ZEROES, 0, 4096, null));
            assertArrayEquals(new byte[4096], client.read(0, 4096));
        }
        assertEquals(List.of("write 0+4096", "fdatasync", "write 0+4096", "fdatasync", "read 0+4096"), file.ops());
    }

    @Test
    void extentsAndReadAheadComeFromTheBackingFile()
            throws IOException
    {
        RecordingBackingFile file = file(FILE, false, 2);
        startServer(Map.of(), List.of(new Export("disk", "", device(file))));
        byte[] data = new byte[128 << 10];
        new java.util.Random(3).nextBytes(data);
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            assertEquals(FLAG_SEND_CACHE, client.transmissionFlags & FLAG_SEND_CACHE);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 1 << 20, data.length, data));

            client.sendRequest(0, CMD_BLOCK_STATUS, 1, 0, 4 << 20);
            NbdTestClient.Chunk status = client.readChunk();
            assertEquals(REPLY_TYPE_BLOCK_STATUS, status.type());
            ByteBuffer b = status.buffer();
            b.getInt();
            assertEquals(List.of(1 << 20, STATE_HOLE | STATE_ZERO, 128 << 10, 0, (3 << 20) - (128 << 10), STATE_HOLE | STATE_ZERO),
                    List.of(b.getInt(), b.getInt(), b.getInt(), b.getInt(), b.getInt(), b.getInt()));

            client.sendRequest(0, CMD_READ, 2, (1 << 20) - (64 << 10), 256 << 10);
            List<NbdTestClient.Chunk> chunks = client.readChunks();
            assertEquals(List.of(REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE),
                    chunks.stream().map(NbdTestClient.Chunk::type).toList());
            byte[] read = NbdTestClient.assemble(chunks, (1 << 20) - (64 << 10), 256 << 10);
            assertArrayEquals(data, java.util.Arrays.copyOfRange(read, 64 << 10, (64 << 10) + data.length));

            assertEquals(0, client.roundTrip(0, CMD_CACHE, 4096, 1 << 20, null));
        }
        assertTrue(file.ops().contains("cache 4096+1048576"), file.ops().toString());
        assertTrue(file.ops().contains("read 1048576+131072"), "only the data was read: " + file.ops());
    }
}
