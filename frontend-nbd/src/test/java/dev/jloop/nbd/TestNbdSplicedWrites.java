package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.loop.stats.OpStats;
import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static dev.jloop.nbd.Eventually.openDescriptors;
import static dev.jloop.nbd.Eventually.waitFor;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Zero-copy WRITEs ({@link SplicedWrites}): on the io_uring connection loop over a buffered io_uring
 * file, WRITEs from {@code splice-write-min} (128 KiB here) up go from the socket through a pipe into the file and
 * take no page of the pool. What lands in the file must be the payload wherever it starts and ends
 * (unaligned, longer than the pipe, at the end of the file), however much of it arrived with the
 * header, with FUA, pipelined with READs and small WRITEs whose headers must not be swallowed as
 * payload; they must be counted by the device as WRITEs; a WRITE past the end is refused with the
 * stream in step; and clients that vanish in the middle of a payload leave no page, request, pipe or
 * descriptor behind.
 */
@Timeout(60)
class TestNbdSplicedWrites
        extends AbstractIoUringFileServerTest
{
    private static final int SIZE = 16 << 20;

    @Override
    int fileSize()
    {
        return SIZE;
    }

    private OpStats writes()
    {
        return device.stats().op(Bio.Op.WRITE);
    }

    /** Unaligned starts and ends, exactly the threshold, longer than the pipe, up to the end of the file. */
    private static final long[][] WRITES = {
            {0, 128 << 10},
            {4097, 200_003},
            {(1 << 20) - 1, (1 << 20) + 2},
            {3 << 20, 4 << 20},
            {(8 << 20) + 511, (3 << 20) + 12345},
            {SIZE - 300_001, 300_001},
    };

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void largeWritesTakeNoPageLandInTheFileAndAreCounted(boolean structured)
            throws Exception
    {
        serveSingleShot(Map.of());
        byte[] expected = content.clone();
        long bytes = 0;
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            int seed = 100;
            for (long[] write : WRITES) {
                byte[] payload = pattern((int) write[1], seed++);
                System.arraycopy(payload, 0, expected, (int) write[0], payload.length);
                assertEquals(0, client.roundTrip(0, CMD_WRITE, write[0], payload.length, payload), "write at " + write[0]);
                bytes += payload.length;
            }
            assertEquals(0, pagePool.slabBytes(), "spliced WRITEs took pages");
            assertArrayEquals(expected, Files.readAllBytes(path), "the file after the WRITEs");
            // read back through the server too (spliced READs from the page cache the WRITEs filled)
            assertArrayEquals(Arrays.copyOfRange(expected, 0, 4 << 20), read(client, structured, 0, 4 << 20));
        }
        assertEquals(WRITES.length, writes().completed(), "WRITEs the device counted");
        assertEquals(bytes, writes().bytes(), "bytes the device counted");
        assertEquals(0, writes().errors());
    }

    @Test
    void belowTheThresholdOrSwitchedOffWritesUsePages()
            throws Exception
    {
        serveSingleShot(Map.of(NbdSettings.SPLICE_WRITE_MIN, "0"));
        byte[] payload = pattern(1 << 20, 3);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 4097, payload.length, payload));
            assertArrayEquals(payload, client.read(4097, payload.length));
        }
        assertNotEquals(0, pagePool.slabBytes(), "with splice-write-min 0 the WRITE goes through pages");
    }

    /**
     * How much of the payload arrives with the header: none (the header alone, then the payload), a
     * little, most of the input buffer; the rest comes later in pieces. FUA and a FLUSH after the reply.
     */
    @ParameterizedTest
    @ValueSource(ints = {0, 1, 4096, 60_000})
    void payloadPartlyReceivedWithItsHeader(int withHeader)
            throws Exception
    {
        serveSingleShot(Map.of());
        byte[] payload = pattern((512 << 10) + 7, withHeader);
        long offset = (5 << 20) + 3;
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            byte[] first = new byte[28 + withHeader];
            ByteBuffer.wrap(first)
                    .putInt(REQUEST_MAGIC)
                    .putShort((short) CMD_FLAG_FUA)
                    .putShort((short) CMD_WRITE)
                    .putLong(41)
                    .putLong(offset)
                    .putInt(payload.length)
                    .put(payload, 0, withHeader);
            client.sendRaw(first);
            Thread.sleep(20);
            int at = withHeader;
            int piece = 70_001;
            while (at < payload.length) {
                int n = Math.min(piece, payload.length - at);
                client.sendRaw(Arrays.copyOfRange(payload, at, at + n));
                at += n;
            }
            NbdTestClient.Reply reply = client.readReply();
            assertEquals(41, reply.cookie());
            assertEquals(0, reply.error());
            assertEquals(0, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
            assertArrayEquals(payload, client.read(offset, payload.length), "read back");
        }
        byte[] file = Files.readAllBytes(path);
        assertArrayEquals(payload, Arrays.copyOfRange(file, (int) offset, (int) offset + payload.length));
        assertEquals(1, writes().completed());
        assertEquals(0, pagePool.slabBytes(), "the spliced WRITE took pages");
    }

    /**
     * Large WRITEs pipelined with READs and small WRITEs: every request after a large payload must be
     * parsed from the right byte (a payload spliced one byte too far would swallow the next header),
     * and every reply must arrive; then the file holds every payload.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void pipelinedWithReadsAndSmallWrites(boolean structured)
            throws Exception
    {
        serveSingleShot(Map.of());
        byte[] expected = content.clone();
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            Map<Long, long[]> reads = new HashMap<>();
            Random random = new Random(9);
            int count = 40;
            for (int i = 0; i < count; i++) {
                long cookie = i + 1;
                switch (i % 4) {
                    case 0: {
                        // large, each to a range of its own (WRITEs in flight together have no order), FUA every other time
                        int offset = (i / 4) * (800 << 10) + random.nextInt(4096);
                        byte[] payload = pattern((128 << 10) + random.nextInt(640 << 10), i);
                        System.arraycopy(payload, 0, expected, offset, payload.length);
                        client.sendRequest(i % 8 == 0 ? CMD_FLAG_FUA : 0, CMD_WRITE, cookie, offset, payload.length, payload);
                        break;
                    }
                    case 1: {
                        // small, each to a range of its own past the large ones
                        int offset = (8000 << 10) + (i / 4) * (17 << 10) + 1;
                        byte[] payload = pattern(1 + random.nextInt(16 << 10), 1000 + i);
                        System.arraycopy(payload, 0, expected, offset, payload.length);
                        client.sendRequest(0, CMD_WRITE, cookie, offset, payload.length, payload);
                        break;
                    }
                    default: {
                        // READs of the last 8 MiB, which no WRITE of this round touches
                        long offset = (8 << 20) + random.nextInt(6 << 20);
                        int length = 1 + random.nextInt(i % 4 == 2 ? 16 << 10 : 1 << 20);
                        client.sendRequest(0, CMD_READ, cookie, offset, length);
                        reads.put(cookie, new long[] {offset, length});
                        break;
                    }
                }
            }
            for (int i = 0; i < count; i++) {
                if (client.nextReplyIsStructured()) {
                    List<NbdTestClient.Chunk> chunks = client.readChunks();
                    long[] read = reads.remove(chunks.get(0).cookie());
                    assertTrue(read != null, "a structured reply to a READ only");
                    assertArrayEquals(Arrays.copyOfRange(content, (int) read[0], (int) (read[0] + read[1])),
                            NbdTestClient.assemble(chunks, read[0], (int) read[1]), "read at " + read[0]);
                }
                else {
                    NbdTestClient.Reply reply = client.readReply();
                    assertEquals(0, reply.error(), "reply to " + reply.cookie());
                    long[] read = reads.remove(reply.cookie());
                    if (read != null) {
                        assertArrayEquals(Arrays.copyOfRange(content, (int) read[0], (int) (read[0] + read[1])),
                                client.readData((int) read[1]), "read at " + read[0]);
                    }
                }
            }
            assertEquals(Map.of(), reads, "READs without a reply");
            assertArrayEquals(Arrays.copyOfRange(expected, 0, 8 << 20), read(client, structured, 0, 8 << 20));
        }
        assertArrayEquals(expected, Files.readAllBytes(path));
        // the large ones spliced, the small ones through pages: the device counts both
        assertEquals(20, writes().completed(), "WRITEs the device counted");
    }

    /** A WRITE that ends at the end of the export is spliced; one past it is refused before any splice, and the stream stays in step. */
    @Test
    void writesAtAndPastTheEnd()
            throws Exception
    {
        serveSingleShot(Map.of());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            byte[] last = pattern(1 << 20, 7);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, SIZE - last.length, last.length, last));
            byte[] past = pattern(256 << 10, 8);
            assertNotEquals(0, client.roundTrip(0, CMD_WRITE, SIZE - (128 << 10), past.length, past), "a WRITE past the end");
            // the refused payload was skipped: the next request is parsed from the right byte
            byte[] next = pattern(300_000, 9);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 12345, next.length, next));
            assertArrayEquals(next, client.read(12345, next.length));
            assertArrayEquals(last, client.read(SIZE - last.length, last.length));
        }
        assertEquals(2, writes().completed());
        assertEquals(SIZE, Files.size(path), "the file did not grow");
    }

    /**
     * The file refuses the write ({@code chattr +i} on the open file: ext4 then fails every write with
     * {@code EPERM}): the spliced WRITE is an error reply, the rest of its payload is skipped, the
     * device counts the failure, and the next requests are parsed from the right byte.
     */
    @Test
    void aFailedFileSpliceIsAnErrorReplyAndTheStreamStaysInStep()
            throws Exception
    {
        CiAssumptions.assumeCommand("chattr");
        serveSingleShot(Map.of());
        boolean immutable = run("chattr", "+i", path.toString()) == 0;
        try {
            CiAssumptions.assumeAvailable(immutable, "chattr +i (root, and a file system that has the flag) on " + path);
            try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                byte[] payload = pattern((2 << 20) + 3, 11);
                assertEquals(NbdProtocol.NBD_EPERM, client.roundTrip(0, CMD_WRITE, 4097, payload.length, payload));
                assertEquals(1, writes().errors(), "the device counted the failure");
                assertArrayEquals(Arrays.copyOfRange(content, 0, 1 << 20), client.read(0, 1 << 20), "the stream is in step");
                assertEquals(0, run("chattr", "-i", path.toString()));
                immutable = false;
                assertEquals(0, client.roundTrip(0, CMD_WRITE, 4097, payload.length, payload), "and spliced WRITEs go on");
                assertArrayEquals(payload, client.read(4097, payload.length));
            }
        }
        finally {
            if (immutable) {
                run("chattr", "-i", path.toString());
            }
        }
    }

    private static int run(String... command)
            throws IOException, InterruptedException
    {
        return new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor();
    }

    @Test
    void clientsThatVanishMidPayloadLeaveNothingBehind()
            throws Exception
    {
        serveSingleShot(Map.of());
        long fds = openDescriptors();
        for (int round = 0; round < 6; round++) {
            NbdTestClient client = NbdTestClient.open(address(), "disk");
            byte[] payload = pattern(3 << 20, round);
            client.sendRequest(0, CMD_READ, 1, 0, 1 << 20);
            client.sendRequest(0, CMD_WRITE, 2, 4096, payload.length, null);
            // a part of the payload: none, less than the input buffer, more than the pipe
            int part = round % 3 == 0 ? 0 : round % 3 == 1 ? 50_000 : (1 << 20) + 4097;
            if (part > 0) {
                client.sendRaw(Arrays.copyOf(payload, part));
            }
            Thread.sleep(20);
            client.close();
        }
        assertTrue(waitFor(() -> pagePool.usedBytes() == 0 && aio.inFlight() == 0 && server.status().connections().isEmpty(), 20),
                "held after the clients left: " + pagePool.usedBytes() + " bytes of pages, " + aio.inFlight() + " kiocbs");
        assertTrue(waitFor(() -> openDescriptors() <= fds, 10), "descriptors leaked (pipes?): " + openDescriptors() + " open, " + fds + " before");
        assertEquals(0, writes().completed(), "no WRITE completed");
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            byte[] payload = pattern(1 << 20, 77);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 4096, payload.length, payload));
            assertArrayEquals(payload, client.read(4096, payload.length));
        }
    }

    /**
     * With single-shot receive, whatever the build runs the other tests with (a multishot receive splices
     * no WRITE), and WRITEs spliced from 128 KiB up unless the options say otherwise, so that the
     * threshold's edge and payloads shorter than the pipe's half are spliced too.
     */
    private void serveSingleShot(Map<String, String> options)
            throws IOException
    {
        Map<String, String> single = new HashMap<>(options);
        single.put(NbdSettings.NBD_RECV, "single");
        single.putIfAbsent(NbdSettings.SPLICE_WRITE_MIN, "128K");
        serve(false, single);
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
