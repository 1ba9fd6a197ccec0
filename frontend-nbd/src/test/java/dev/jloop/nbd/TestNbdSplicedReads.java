package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.loop.stats.OpStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static dev.jloop.nbd.Eventually.openDescriptors;
import static dev.jloop.nbd.Eventually.waitFor;
import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Zero-copy READs ({@link SplicedReads}): on the io_uring connection loop over a buffered io_uring
 * file, READs from {@code splice-min} up go from the file through a pipe into the socket and take no
 * page of the pool. Their data must be right wherever they start and end (unaligned, longer than the
 * pipe, at the end of the file), simple and structured, pipelined with small READs and WRITEs whose
 * replies must not land inside a spliced reply; they must be counted by the device as READs; holes
 * keep their chunks; a file shorter than the export is an error reply, not a hang; and clients
 * that vanish in the middle of a splice leave no page, request, pipe or descriptor behind.
 */
@Timeout(60)
class TestNbdSplicedReads
        extends AbstractIoUringFileServerTest
{
    private static final int SIZE = 16 << 20;

    @Override
    int fileSize()
    {
        return SIZE;
    }

    private OpStats reads()
    {
        return device.stats().op(Bio.Op.READ);
    }

    /** Unaligned starts and ends, exactly the threshold, longer than the pipe, up to the end of the file. */
    private static final long[][] READS = {
            {0, 128 << 10},
            {4097, 200_003},
            {(1 << 20) - 1, (1 << 20) + 2},
            {3 << 20, 4 << 20},
            {(8 << 20) + 511, (3 << 20) + 12345},
            {SIZE - 300_001, 300_001},
            {SIZE - (2 << 20), 2 << 20},
    };

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void largeReadsTakeNoPageAndAreCountedByTheDevice(boolean structured)
            throws Exception
    {
        serve(false, Map.of());
        long bytes = 0;
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            for (long[] read : READS) {
                long offset = read[0];
                int length = (int) read[1];
                byte[] expected = Arrays.copyOfRange(content, (int) offset, (int) offset + length);
                if (structured) {
                    client.sendRequest(0, CMD_READ, 7, offset, length);
                    List<NbdTestClient.Chunk> chunks = client.readChunks();
                    assertEquals(1, chunks.size(), "one chunk for " + offset);
                    assertEquals(REPLY_TYPE_OFFSET_DATA, chunks.get(0).type());
                    assertEquals(REPLY_FLAG_DONE, chunks.get(0).flags());
                    assertEquals(7, chunks.get(0).cookie());
                    assertArrayEquals(expected, NbdTestClient.assemble(chunks, offset, length), "read at " + offset);
                }
                else {
                    assertArrayEquals(expected, client.read(offset, length), "read at " + offset);
                }
                bytes += length;
            }
        }
        assertEquals(0, pagePool.slabBytes(), "spliced READs took pages");
        assertEquals(READS.length, reads().completed(), "READs the device counted");
        assertEquals(bytes, reads().bytes(), "bytes the device counted");
        assertEquals(0, reads().errors());
    }

    @Test
    void belowTheThresholdOrSwitchedOffReadsUsePages()
            throws Exception
    {
        serve(false, Map.of(NbdSettings.SPLICE_MIN, "0"));
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOfRange(content, 4097, 4097 + (1 << 20)), client.read(4097, 1 << 20));
        }
        assertNotEquals(0, pagePool.slabBytes(), "with splice-min 0 the READ goes through pages");
    }

    /**
     * Large READs pipelined with small READs and WRITEs (to other ranges): every reply arrives whole
     * with its own cookie (a reply gathered into the middle of a spliced one would break the
     * stream), and large READs of what was just written read it back.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void pipelinedWithSmallReadsAndWrites(boolean structured)
            throws Exception
    {
        serve(false, Map.of());
        byte[] expected = content.clone();
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            Map<Long, long[]> reads = new HashMap<>();
            int writes = 0;
            long cookie = 0;
            Random random = new Random(5);
            for (int i = 0; i < 48; i++) {
                cookie++;
                switch (i % 4) {
                    case 0: {
                        // large, in the first 8 MiB
                        long offset = random.nextInt(6 << 20) + 1;
                        int length = (128 << 10) + random.nextInt(2 << 20);
                        client.sendRequest(0, CMD_READ, cookie, offset, length);
                        reads.put(cookie, new long[] {offset, length});
                        break;
                    }
                    case 1:
                    case 2: {
                        long offset = random.nextInt(8 << 20);
                        int length = 1 + random.nextInt(16 << 10);
                        client.sendRequest(0, CMD_READ, cookie, offset, length);
                        reads.put(cookie, new long[] {offset, length});
                        break;
                    }
                    default: {
                        // writes go to the last 8 MiB, which no READ of this round touches
                        int offset = (8 << 20) + writes * (100 << 10) + 3;
                        byte[] payload = pattern(64 << 10, i);
                        System.arraycopy(payload, 0, expected, offset, payload.length);
                        client.sendRequest(0, CMD_WRITE, cookie, offset, payload.length, payload);
                        writes++;
                        break;
                    }
                }
            }
            for (int i = 0; i < 48; i++) {
                if (client.nextReplyIsStructured()) {
                    List<NbdTestClient.Chunk> chunks = client.readChunks();
                    long[] read = reads.remove(chunks.get(0).cookie());
                    if (read == null) {
                        assertEquals(1, chunks.size());
                        continue;
                    }
                    assertArrayEquals(Arrays.copyOfRange(content, (int) read[0], (int) (read[0] + read[1])),
                            NbdTestClient.assemble(chunks, read[0], (int) read[1]), "read at " + read[0]);
                }
                else {
                    NbdTestClient.Reply reply = client.readReply();
                    assertEquals(0, reply.error());
                    long[] read = reads.remove(reply.cookie());
                    if (read == null) {
                        continue;
                    }
                    assertArrayEquals(Arrays.copyOfRange(content, (int) read[0], (int) (read[0] + read[1])),
                            client.readData((int) read[1]), "read at " + read[0]);
                }
            }
            assertEquals(Map.of(), reads, "READs without a reply");
            // what was written, read back by splice from the page cache
            byte[] back = read(client, structured, 8 << 20, 8 << 20);
            assertArrayEquals(Arrays.copyOfRange(expected, 8 << 20, 16 << 20), back);
        }
    }

    /** A READ over a hole keeps its OFFSET_HOLE chunk (not spliced); one inside the data is one spliced chunk. */
    @Test
    void readsOverAHoleKeepTheirHoleChunks()
            throws Exception
    {
        byte[] sparse = content.clone();
        try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
            raf.setLength(4 << 20);
            raf.setLength(SIZE);
        }
        Arrays.fill(sparse, 4 << 20, SIZE, (byte) 0);
        serve(false, Map.of());
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            long offset = (3 << 20) + 5;
            int length = 2 << 20;
            client.sendRequest(0, CMD_READ, 1, offset, length);
            List<NbdTestClient.Chunk> chunks = client.readChunks();
            assertTrue(chunks.stream().anyMatch(chunk -> chunk.type() == REPLY_TYPE_OFFSET_HOLE), "a hole chunk: " + chunks);
            assertArrayEquals(Arrays.copyOfRange(sparse, (int) offset, (int) offset + length), NbdTestClient.assemble(chunks, offset, length));
            long slabs = pagePool.slabBytes();
            client.sendRequest(0, CMD_READ, 2, 4097, 3 << 20);
            List<NbdTestClient.Chunk> data = client.readChunks();
            assertEquals(1, data.size());
            assertArrayEquals(Arrays.copyOfRange(sparse, 4097, 4097 + (3 << 20)), NbdTestClient.assemble(data, 4097, 3 << 20));
            assertEquals(slabs, pagePool.slabBytes(), "the READ of data took pages");
        }
    }

    /**
     * The file shrinks under the export: a READ past its new end is answered with an error before any
     * of its data (it fits the pipe), the connection goes on, and the device counts the failure.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void aFileShorterThanTheExportIsAnErrorReply(boolean structured)
            throws Exception
    {
        serve(false, Map.of());
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            // structured: the connection learns that the whole file is data, so the next READ asks for no extents
            assertArrayEquals(Arrays.copyOfRange(content, 0, 64 << 10), read(client, structured, 0, 64 << 10));
            try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
                raf.setLength(SIZE / 2);
            }
            client.sendRequest(0, CMD_READ, 3, SIZE / 2 - (64 << 10), 256 << 10);
            if (structured) {
                List<NbdTestClient.Chunk> chunks = client.readChunks();
                assertEquals(1, chunks.size());
                assertEquals(NbdProtocol.REPLY_TYPE_ERROR, chunks.get(0).type());
                assertEquals(NbdProtocol.NBD_EIO, chunks.get(0).buffer().getInt());
            }
            else {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(3, reply.cookie());
                assertEquals(NbdProtocol.NBD_EIO, reply.error());
            }
            assertArrayEquals(Arrays.copyOfRange(content, 0, 1 << 20), read(client, structured, 0, 1 << 20), "the connection goes on");
        }
        assertEquals(1, reads().errors());
    }

    @Test
    void clientsThatVanishMidSpliceLeaveNothingBehind()
            throws Exception
    {
        serve(false, Map.of());
        long fds = openDescriptors();
        for (int round = 0; round < 6; round++) {
            NbdTestClient client = round % 2 == 0 ? NbdTestClient.open(address(), "disk") : NbdTestClient.openStructured(address(), "disk");
            for (int k = 0; k < 12; k++) {
                client.sendRequest(0, CMD_READ, k, (long) k * (1 << 20) + round, (3 << 20) + k);
                client.sendRequest(0, CMD_READ, 100 + k, (long) k * 4096, 4096);
            }
            if (round >= 3) {
                // part of the first reply, then gone with the rest in the pipe and the socket
                client.readData(100_000);
            }
            client.close();
        }
        assertTrue(waitFor(() -> pagePool.usedBytes() == 0 && aio.inFlight() == 0 && server.status().connections().isEmpty(), 20),
                "held after the clients left: " + pagePool.usedBytes() + " bytes of pages, " + aio.inFlight() + " kiocbs");
        assertTrue(waitFor(() -> openDescriptors() <= fds, 10), "descriptors leaked (pipes?): " + openDescriptors() + " open, " + fds + " before");
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOfRange(content, 2 << 20, (4 << 20) + 1), client.read(2 << 20, (2 << 20) + 1));
        }
    }

    private static byte[] read(NbdTestClient client, boolean structured, long offset, int length)
            throws IOException
    {
        if (!structured) {
            return client.read(offset, length);
        }
        client.sendRequest(0, CMD_READ, 0xfeed, offset, length);
        return NbdTestClient.assemble(client.readChunks(), offset, length);
    }
}
