package dev.jloop.nbd;

import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_REQ_ONE;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_DF;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.NBD_EINVAL;
import static dev.jloop.nbd.NbdProtocol.NBD_EIO;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_SET_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_STRUCTURED_REPLY;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR_OFFSET;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_NONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_INVALID;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNKNOWN;
import static dev.jloop.nbd.NbdProtocol.REP_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.STATE_HOLE;
import static dev.jloop.nbd.NbdProtocol.STATE_ZERO;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Structured replies, metadata contexts and block status, CACHE and FAST_ZERO, with a raw client. */
class TestNbdStructuredReplies
        extends AbstractNbdServerTest
{
    private static final int KIB = 1024;

    /** 8 MiB disk: data at [64K, 128K), [132K, 136K) and [1M, 1M + 100K); holes elsewhere. */
    private byte[] layout()
    {
        Random random = new Random(7);
        byte[] a = new byte[64 * KIB];
        byte[] b = new byte[4 * KIB];
        byte[] c = new byte[100 * KIB];
        random.nextBytes(a);
        random.nextBytes(b);
        random.nextBytes(c);
        disk.write(64 * KIB, a);
        disk.write(132 * KIB, b);
        disk.write(1 << 20, c);
        return disk.read(0, 2 << 20);
    }

    @Test
    void readsSkipHolesAndCarryTheData()
            throws IOException
    {
        startServer(Map.of());
        byte[] expected = layout();
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk")) {
            assertEquals(FLAG_SEND_DF, client.transmissionFlags & FLAG_SEND_DF);

            client.sendRequest(0, CMD_READ, 1, 0, 2 << 20);
            List<NbdTestClient.Chunk> chunks = client.readChunks();
            assertArrayEquals(expected, NbdTestClient.assemble(chunks, 0, 2 << 20));
            // hole [0,64K), data [64K,136K) (the 4K hole at 128K is too small to skip), hole, data, hole
            assertEquals(List.of(REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE),
                    chunks.stream().map(NbdTestClient.Chunk::type).toList());
            assertEquals(64 * KIB + 8 + 8 * KIB, chunks.get(1).data().length, "the small hole travels as data");
            assertDoneOnlyOnLast(chunks, 1);

            // unaligned read across hole and data
            client.sendRequest(0, CMD_READ, 2, 100, 200 * KIB);
            byte[] data = NbdTestClient.assemble(client.readChunks(), 100, 200 * KIB);
            assertArrayEquals(java.util.Arrays.copyOfRange(expected, 100, 100 + 200 * KIB), data);

            // a read wholly inside a hole: one hole chunk, no bio
            int readsBefore = countReads();
            client.sendRequest(0, CMD_READ, 3, 4 << 20, 1 << 20);
            List<NbdTestClient.Chunk> hole = client.readChunks();
            assertEquals(1, hole.size());
            assertEquals(REPLY_TYPE_OFFSET_HOLE, hole.get(0).type());
            assertEquals(4L << 20, hole.get(0).buffer().getLong());
            assertEquals(1 << 20, hole.get(0).buffer().getInt(8));
            assertEquals(readsBefore, countReads(), "a hole was read");

            // DF: one data chunk even across holes
            client.sendRequest(CMD_FLAG_DF, CMD_READ, 4, 0, 2 << 20);
            List<NbdTestClient.Chunk> whole = client.readChunks();
            assertEquals(1, whole.size());
            assertEquals(REPLY_TYPE_OFFSET_DATA, whole.get(0).type());
            assertArrayEquals(expected, NbdTestClient.assemble(whole, 0, 2 << 20));

            // small reads are one data chunk without asking for extents
            client.sendRequest(0, CMD_READ, 5, 64 * KIB, 4 * KIB);
            List<NbdTestClient.Chunk> small = client.readChunks();
            assertEquals(1, small.size());
            assertEquals(REPLY_TYPE_OFFSET_DATA, small.get(0).type());

            client.sendRequest(0, CMD_READ, 6, 0, 0);
            List<NbdTestClient.Chunk> empty = client.readChunks();
            assertEquals(1, empty.size());
            assertEquals(REPLY_TYPE_NONE, empty.get(0).type());
        }
    }

    @Test
    void chunksCompletingOutOfOrderOnAnotherThreadMakeOneReply()
            throws IOException
    {
        startServer(Map.of());
        byte[] expected = layout();
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk")) {
            for (int round = 0; round < 10; round++) {
                // the read has two data chunks; the device holds both, then ends them newest first
                disk.holdUntil(2);
                client.sendRequest(0, CMD_READ, round, 0, 2 << 20);
                List<NbdTestClient.Chunk> chunks = client.readChunks();
                assertArrayEquals(expected, NbdTestClient.assemble(chunks, 0, 2 << 20));
                assertDoneOnlyOnLast(chunks, round);
            }
            // several split reads in flight at once keep their chunks apart by cookie
            for (int i = 0; i < 8; i++) {
                client.sendRequest(0, CMD_READ, 100 + i, i * 4096L, (2 << 20) - 8 * 4096);
            }
            Map<Long, List<NbdTestClient.Chunk>> byCookie = new java.util.HashMap<>();
            int done = 0;
            while (done < 8) {
                NbdTestClient.Chunk chunk = client.readChunk();
                byCookie.computeIfAbsent(chunk.cookie(), c -> new ArrayList<>()).add(chunk);
                if (chunk.done()) {
                    done++;
                }
            }
            for (int i = 0; i < 8; i++) {
                int length = (2 << 20) - 8 * 4096;
                assertArrayEquals(java.util.Arrays.copyOfRange(expected, i * 4096, i * 4096 + length),
                        NbdTestClient.assemble(byCookie.get(100L + i), i * 4096L, length));
            }
        }
    }

    @Test
    void readErrorsAreErrorChunks()
            throws IOException
    {
        startServer(Map.of());
        layout();
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk")) {
            client.sendRequest(0, CMD_READ, 9, DISK_SIZE - 1, 2);
            NbdTestClient.Chunk invalid = client.readChunk();
            assertEquals(REPLY_TYPE_ERROR, invalid.type());
            assertTrue(invalid.done());
            assertEquals(NBD_EINVAL, invalid.buffer().getInt());
            int messageLength = invalid.buffer().getShort(4);
            assertEquals(6 + messageLength, invalid.data().length);

            disk.failWith(Errno.EIO);
            // with the device failing extents too, the read is planned as one data chunk that fails
            client.sendRequest(0, CMD_READ, 10, 64 * KIB, 4 * KIB);
            NbdTestClient.Chunk failed = client.readChunk();
            assertEquals(REPLY_TYPE_ERROR_OFFSET, failed.type());
            assertTrue(failed.done());
            ByteBuffer b = failed.buffer();
            assertEquals(NBD_EIO, b.getInt());
            int length = b.getShort();
            b.position(b.position() + length);
            assertEquals(64 * KIB, b.getLong(), "the offset of the failed chunk");
            disk.failWith(0);
            assertEquals(REPLY_TYPE_OFFSET_DATA, readOne(client, 64 * KIB, 4 * KIB).type());
        }
        server.close();
        assertEquals(0, disk.plugDepth());
    }

    @Test
    void withoutStructuredRepliesReadsStaySimple()
            throws IOException
    {
        startServer(Map.of());
        byte[] expected = layout();
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.transmissionFlags & FLAG_SEND_DF);
            assertArrayEquals(expected, client.read(0, 2 << 20));
            assertEquals(NBD_EINVAL, client.roundTrip(CMD_FLAG_DF, CMD_READ, 0, 1, null));
        }
    }

    @Test
    void listMetaContextAnswersEmptyQueriesNamespaceAndName()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE);
            // before structured replies: invalid
            client.sendOption(OPT_LIST_META_CONTEXT, NbdTestClient.metaContextRequest("disk"));
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());

            client.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, client.readOptionReply().type());
            assertEquals(List.of(BASE_ALLOCATION), contexts(client, OPT_LIST_META_CONTEXT, NbdTestClient.metaContextRequest("disk")));
            assertEquals(List.of(BASE_ALLOCATION), contexts(client, OPT_LIST_META_CONTEXT, NbdTestClient.metaContextRequest("disk", "base:")));
            assertEquals(List.of(BASE_ALLOCATION), contexts(client, OPT_LIST_META_CONTEXT,
                    NbdTestClient.metaContextRequest("disk", "qemu:dirty-bitmap:x", BASE_ALLOCATION, "base:")));
            assertEquals(List.of(), contexts(client, OPT_LIST_META_CONTEXT, NbdTestClient.metaContextRequest("disk", "x-other:", "base:nothing")));
            // SET takes full names only
            assertEquals(List.of(), contexts(client, OPT_SET_META_CONTEXT, NbdTestClient.metaContextRequest("disk", "base:")));

            client.sendOption(OPT_SET_META_CONTEXT, NbdTestClient.metaContextRequest("nope", BASE_ALLOCATION));
            assertEquals(REP_ERR_UNKNOWN, client.readOptionReply().type());
            // a query longer than the option data
            byte[] bad = NbdTestClient.metaContextRequest("disk", BASE_ALLOCATION);
            ByteBuffer.wrap(bad).putInt(12, 1000);
            client.sendOption(OPT_SET_META_CONTEXT, bad);
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            // more queries announced than sent
            byte[] missing = NbdTestClient.metaContextRequest("disk", BASE_ALLOCATION);
            ByteBuffer.wrap(missing).putInt(8, 2);
            client.sendOption(OPT_SET_META_CONTEXT, missing);
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
        }
    }

    @Test
    void blockStatusReportsHolesAndData()
            throws IOException
    {
        startServer(Map.of());
        layout();
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION, "unknown:thing")) {
            assertEquals(Map.of(BASE_ALLOCATION, NbdProtocol.BASE_ALLOCATION_ID), client.metaContexts);
            List<long[]> extents = blockStatus(client, 0, 0, 2 << 20);
            assertEquals(List.of(
                            List.of(64L * KIB, (long) (STATE_HOLE | STATE_ZERO)),
                            List.of(64L * KIB, 0L),
                            List.of(4L * KIB, (long) (STATE_HOLE | STATE_ZERO)),
                            List.of(4L * KIB, 0L),
                            List.of((1L << 20) - 136 * KIB, (long) (STATE_HOLE | STATE_ZERO)),
                            List.of(100L * KIB, 0L),
                            List.of((1L << 20) - 100 * KIB, (long) (STATE_HOLE | STATE_ZERO))),
                    extents.stream().map(e -> List.of(e[0], e[1])).toList());

            List<long[]> one = blockStatus(client, CMD_FLAG_REQ_ONE, 10, 1 << 20);
            assertEquals(1, one.size());
            assertEquals(64L * KIB - 10, one.get(0)[0]);
            assertEquals(STATE_HOLE | STATE_ZERO, one.get(0)[1]);

            assertEquals(NBD_EINVAL, statusError(client, 0, DISK_SIZE, 1));
            assertEquals(NBD_EINVAL, statusError(client, 0, 0, 0));
            // FUA is accepted on every command once negotiated (the spec's MUST), and means nothing here
            assertEquals(blockStatus(client, 0, 0, 4096).size(), blockStatus(client, NbdProtocol.CMD_FLAG_FUA, 0, 4096).size());
        }
    }

    @Test
    void blockStatusIsBoundedInExtents()
            throws IOException
    {
        startServer(Map.of());
        // data in every other 4K chunk: 1024 alternations per 8 MiB
        for (long off = 0; off < DISK_SIZE; off += 8192) {
            disk.write(off, new byte[] {1});
        }
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            List<long[]> extents = blockStatus(client, 0, 0, (int) DISK_SIZE);
            assertEquals(BlockStatus.MAX_EXTENTS, extents.size());
            long covered = extents.stream().mapToLong(e -> e[0]).sum();
            assertEquals(BlockStatus.MAX_EXTENTS * 4096L, covered);
            // the client goes on from where the reply ended
            List<long[]> rest = blockStatus(client, 0, covered, (int) (DISK_SIZE - covered));
            assertEquals(0L, rest.get(0)[1]);
        }
    }

    @Test
    void blockStatusNeedsTheContextOnTheSameExport()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient structuredOnly = NbdTestClient.openStructured(address(), "disk")) {
            assertEquals(NBD_EINVAL, statusError(structuredOnly, 0, 0, 4096));
        }
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE);
            client.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, client.readOptionReply().type());
            assertEquals(List.of(BASE_ALLOCATION), contexts(client, OPT_SET_META_CONTEXT, NbdTestClient.metaContextRequest("ro", BASE_ALLOCATION)));
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            NbdTestClient.OptionReply reply;
            while ((reply = client.readOptionReply()).type() != REP_ACK) {
                assertEquals(NbdProtocol.REP_INFO, reply.type());
            }
            // selected for "ro", but the client went on to "disk"
            assertEquals(NBD_EINVAL, statusError(client, 0, 0, 4096));
        }
    }

    @Test
    void devicesWithoutExtentsAreAllData()
            throws IOException
    {
        MemoryBlockDevice plain = new MemoryBlockDevice(1 << 20, DeviceCapabilities.builder().build());
        startServer(Map.of(), List.of(new Export("plain", "", plain)));
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "plain", BASE_ALLOCATION)) {
            assertEquals(0, client.transmissionFlags & (FLAG_SEND_CACHE | FLAG_SEND_FAST_ZERO));
            List<long[]> extents = blockStatus(client, 0, 0, 1 << 20);
            assertEquals(1, extents.size());
            assertEquals(1L << 20, extents.get(0)[0]);
            assertEquals(0L, extents.get(0)[1]);
            List<NbdTestClient.Chunk> read = readAll(client, 0, 1 << 20);
            assertEquals(1, read.size());
            assertEquals(REPLY_TYPE_OFFSET_DATA, read.get(0).type());
        }
    }

    @Test
    void cacheAndFastZeroReachTheDevice()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(FLAG_SEND_CACHE | FLAG_SEND_FAST_ZERO, client.transmissionFlags & (FLAG_SEND_CACHE | FLAG_SEND_FAST_ZERO));
            assertEquals(0, client.roundTrip(0, CMD_CACHE, 4096, 1 << 20, null));
            assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_CACHE, DISK_SIZE, 1, null));
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, 3, new byte[] {1, 2, 3}));
            assertEquals(0, client.roundTrip(CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 0, 4096, null));
            assertArrayEquals(new byte[3], client.read(0, 3));
        }
        assertTrue(disk.log().contains("CACHE 4096 1048576 flags=0"), disk.log().toString());
        assertTrue(disk.log().contains("WRITE_ZEROES 0 4096 flags=" + (dev.jloop.api.Bio.REQ_NOUNMAP | dev.jloop.api.Bio.REQ_NOFALLBACK)), disk.log().toString());
    }

    private int countReads()
    {
        return (int) disk.log().stream().filter(op -> op.startsWith("READ")).count();
    }

    private static NbdTestClient.Chunk readOne(NbdTestClient client, long offset, int length)
            throws IOException
    {
        List<NbdTestClient.Chunk> chunks = readAll(client, offset, length);
        assertEquals(1, chunks.size());
        return chunks.get(0);
    }

    private static List<NbdTestClient.Chunk> readAll(NbdTestClient client, long offset, int length)
            throws IOException
    {
        client.sendRequest(0, CMD_READ, 77, offset, length);
        List<NbdTestClient.Chunk> chunks = client.readChunks();
        chunks.forEach(chunk -> assertEquals(77, chunk.cookie()));
        return chunks;
    }

    private static void assertDoneOnlyOnLast(List<NbdTestClient.Chunk> chunks, long cookie)
    {
        for (int i = 0; i < chunks.size(); i++) {
            assertEquals(cookie, chunks.get(i).cookie());
            assertEquals(i == chunks.size() - 1 ? REPLY_FLAG_DONE : 0, chunks.get(i).flags());
        }
    }

    private static List<String> contexts(NbdTestClient client, int option, byte[] request)
            throws IOException
    {
        client.sendOption(option, request);
        List<String> names = new ArrayList<>();
        NbdTestClient.OptionReply reply;
        while ((reply = client.readOptionReply()).type() == REP_META_CONTEXT) {
            ByteBuffer data = reply.buffer();
            int id = data.getInt();
            assertEquals(option == OPT_LIST_META_CONTEXT ? 0 : NbdProtocol.BASE_ALLOCATION_ID, id);
            names.add(StandardCharsets.UTF_8.decode(data).toString());
        }
        assertEquals(REP_ACK, reply.type());
        return names;
    }

    private static List<long[]> blockStatus(NbdTestClient client, int flags, long offset, int length)
            throws IOException
    {
        client.sendRequest(flags, CMD_BLOCK_STATUS, 55, offset, length);
        NbdTestClient.Chunk chunk = client.readChunk();
        assertEquals(REPLY_TYPE_BLOCK_STATUS, chunk.type(), "chunk type");
        assertTrue(chunk.done());
        assertEquals(55, chunk.cookie());
        ByteBuffer b = chunk.buffer();
        assertEquals(NbdProtocol.BASE_ALLOCATION_ID, b.getInt());
        List<long[]> extents = new ArrayList<>();
        long total = 0;
        while (b.hasRemaining()) {
            long length2 = Integer.toUnsignedLong(b.getInt());
            long state = Integer.toUnsignedLong(b.getInt());
            assertTrue(length2 > 0);
            extents.add(new long[] {length2, state});
            total += length2;
        }
        assertTrue(total <= length, "extents past the request");
        return extents;
    }

    private static int statusError(NbdTestClient client, int flags, long offset, int length)
            throws IOException
    {
        client.sendRequest(flags, CMD_BLOCK_STATUS, 56, offset, length);
        NbdTestClient.Chunk chunk = client.readChunk();
        assertEquals(REPLY_TYPE_ERROR, chunk.type());
        assertTrue(chunk.done());
        return chunk.buffer().getInt();
    }
}
