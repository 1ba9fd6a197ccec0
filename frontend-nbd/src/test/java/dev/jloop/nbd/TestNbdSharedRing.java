package dev.jloop.nbd;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static dev.jloop.nbd.Eventually.openDescriptors;
import static dev.jloop.nbd.Eventually.waitFor;
import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The io_uring connection loop over the io_uring backend, which then does the connection's file I/O
 * on the connection's ring: every kind of request answered right, buffered and {@code O_DIRECT}, with
 * the file's own ring left out where the lent one serves; sparse structured reads whose bios overflow
 * a small ring (held, then written at the next turn); clients that vanish with file I/O in flight on
 * their ring, after which no page, kiocb or descriptor is left and the file still serves.
 */
class TestNbdSharedRing
        extends AbstractIoUringFileServerTest
{
    private static final int SIZE = 8 << 20;

    @Override
    int fileSize()
    {
        return SIZE;
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void everyKindOfRequestOnTheConnectionsRing(boolean direct)
            throws Exception
    {
        serve(direct, Map.of());
        long fileEnters = file.submitCalls();
        byte[] expected = content.clone();
        byte[] big = pattern(256 << 10, 1);
        byte[] small = pattern(8 << 10, 2);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (int k = 0; k < 8; k++) {
                int at = k * (512 << 10);
                assertArrayEquals(Arrays.copyOfRange(content, at, at + (64 << 10)), client.read(at, 64 << 10), "read " + k);
            }
            if (!direct) {
                assertEquals(fileEnters, file.submitCalls(), "reads entered the file's own ring");
            }
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 1 << 20, big.length, big));
            System.arraycopy(big, 0, expected, 1 << 20, big.length);
            assertEquals(0, client.roundTrip(0, CMD_WRITE, 3 << 20, small.length, small));
            System.arraycopy(small, 0, expected, 3 << 20, small.length);
            assertEquals(0, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
            // under O_DIRECT too: aligned writes hold their blocks on the connection's ring
            assertEquals(fileEnters, file.submitCalls(), "writes entered the file's own ring");
            assertEquals(0, client.roundTrip(0, CMD_TRIM, 4 << 20, 128 << 10, null));
            Arrays.fill(expected, 4 << 20, (4 << 20) + (128 << 10), (byte) 0);
            assertEquals(0, client.roundTrip(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 5 << 20, 64 << 10, null));
            Arrays.fill(expected, 5 << 20, (5 << 20) + (64 << 10), (byte) 0);
            for (int at : new int[] {1 << 20, 3 << 20, 4 << 20, 5 << 20}) {
                assertArrayEquals(Arrays.copyOfRange(expected, at - 4096, at + (256 << 10)), client.read(at - 4096, (256 << 10) + 4096), "read back at " + at);
            }
            if (!direct) {
                assertEquals(fileEnters, file.submitCalls(), "buffered I/O entered the file's own ring");
            }
            // FUA zeroing: the fallocate here, the fdatasync after it from the device's work queue
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE_ZEROES, 6 << 20, 16 << 10, null));
            Arrays.fill(expected, 6 << 20, (6 << 20) + (16 << 10), (byte) 0);
            assertArrayEquals(Arrays.copyOfRange(expected, 6 << 20, (6 << 20) + (32 << 10)), client.read(6 << 20, 32 << 10));
        }
        assertEquals(0, file.fixedSubmissions(), "fixed buffers used though no page is pinned");
        server.close();
        server = null;
        assertArrayEquals(expected, Files.readAllBytes(path), "the file after the requests");
    }

    /**
     * With pinned pages ({@code registered-bytes}), the connection registers them on its ring and the
     * file's single-page reads and writes there go as READ_FIXED/WRITE_FIXED: still on the
     * connection's ring, with the right data both ways.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void pinnedPagesAreFixedBuffersOnTheConnectionsRing(boolean direct)
            throws Exception
    {
        pagePool.reserve(4 << 20);
        // the 128 KiB writes and read-backs must go through pages, not be spliced
        serve(direct, Map.of(NbdSettings.SPLICE_MIN, "0", NbdSettings.SPLICE_WRITE_MIN, "0"));
        long fileEnters = file.submitCalls();
        byte[] expected = content.clone();
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (int k = 0; k < 8; k++) {
                int at = k * (256 << 10) + 4096;
                assertArrayEquals(Arrays.copyOfRange(content, at, at + (64 << 10)), client.read(at, 64 << 10), "read " + k);
            }
            long fixedReads = file.fixedSubmissions();
            assertTrue(fixedReads >= 8, "reads into pinned pages as READ_FIXED: " + fixedReads);
            if (!direct) {
                assertEquals(fileEnters, file.submitCalls(), "fixed reads entered the file's own ring");
            }
            for (int k = 0; k < 4; k++) {
                byte[] data = pattern(128 << 10, 10 + k);
                int at = (4 << 20) + k * (512 << 10);
                assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, at, data.length, data), "write " + k);
                System.arraycopy(data, 0, expected, at, data.length);
                assertArrayEquals(data, client.read(at, data.length), "read back " + k);
            }
            if (!direct) {
                assertTrue(file.fixedSubmissions() >= fixedReads + 8, "FUA writes from pinned pages as WRITE_FIXED: " + file.fixedSubmissions());
                assertEquals(fileEnters, file.submitCalls(), "fixed writes entered the file's own ring");
            }
        }
        server.close();
        server = null;
        assertArrayEquals(expected, Files.readAllBytes(path), "the file after the requests");
    }

    /**
     * Under {@code O_DIRECT}, an aligned write holds its block on the connection's ring until the loop
     * reaps it; an unaligned write right behind it must read-modify-write that block, which it may do
     * only once the first is done. The loop's thread must not wait for that (it alone would reap the
     * first write): the file refuses, the device's worker waits instead. Two connections, pipelined,
     * every block written both ways: no hang, every reply OK, and each block is the aligned write with
     * the unaligned one over it.
     */
    @Test
    void unalignedWritesBehindAlignedOnesOnTheConnectionsRingNeitherHangNorTear()
            throws Exception
    {
        serve(true, Map.of());
        int blocks = 256;
        byte[] expected = content.clone();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            try (NbdTestClient first = NbdTestClient.open(address(), "disk");
                    NbdTestClient second = NbdTestClient.open(address(), "disk")) {
                NbdTestClient[] clients = {first, second};
                for (int block = 0; block < blocks; block++) {
                    NbdTestClient client = clients[block % 2];
                    long at = block * 4096L;
                    byte[] whole = pattern(4096, 100 + block);
                    byte[] patch = pattern(100, 1000 + block);
                    client.sendRequest(0, CMD_WRITE, 2L * block, at, whole.length, whole);
                    client.sendRequest(0, CMD_WRITE, 2L * block + 1, at + 10, patch.length, patch);
                    System.arraycopy(whole, 0, expected, (int) at, whole.length);
                    System.arraycopy(patch, 0, expected, (int) at + 10, patch.length);
                }
                for (NbdTestClient client : clients) {
                    for (int i = 0; i < blocks; i++) {
                        NbdTestClient.Reply reply = client.readReply();
                        assertEquals(0, reply.error(), "write " + reply.cookie());
                    }
                }
                for (int block = 0; block < blocks; block += 37) {
                    assertArrayEquals(Arrays.copyOfRange(expected, block * 4096, (block + 1) * 4096), first.read(block * 4096L, 4096), "block " + block);
                }
            }
        });
        server.close();
        server = null;
        assertArrayEquals(expected, Files.readAllBytes(path), "the file after the writes");
    }

    /**
     * Structured READs of a file with a hole after every 4 KiB of data: each is about eight bios, two
     * requests in flight at most, and the ring has eight SQEs for the file, so a turn's file I/O does
     * not fit and is held for the next turn. Every read must still come back whole and right.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void fragmentedReadsThatOverflowTheRingAreHeldNotLost(boolean direct)
            throws Exception
    {
        int span = 512 << 10;
        byte[] sparse = new byte[SIZE];
        try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
            raf.setLength(0);
            raf.setLength(SIZE);
            for (int at = 0; at < SIZE; at += 64 << 10) {
                raf.seek(at);
                raf.write(content, at, 4096);
                System.arraycopy(content, at, sparse, at, 4096);
            }
        }
        serve(direct, Map.of(NbdSettings.MAX_INFLIGHT_REQUESTS, "2"));
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            int count = 16;
            for (int i = 0; i < count; i++) {
                client.sendRequest(0, CMD_READ, i, (long) i * span, span);
            }
            boolean[] seen = new boolean[count];
            for (int i = 0; i < count; i++) {
                List<NbdTestClient.Chunk> chunks = client.readChunks();
                int cookie = (int) chunks.get(0).cookie();
                assertTrue(!seen[cookie], "two replies for " + cookie);
                seen[cookie] = true;
                assertTrue(chunks.size() > 8, "read " + cookie + " in " + chunks.size() + " chunks: not fragmented");
                assertArrayEquals(Arrays.copyOfRange(sparse, cookie * span, (cookie + 1) * span),
                        NbdTestClient.assemble(chunks, (long) cookie * span, span), "data of read " + cookie);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void clientsThatVanishWithFileIoOnTheirRingLeaveNothingBehind(boolean direct)
            throws Exception
    {
        serve(direct, Map.of());
        long fds = openDescriptors();
        for (int round = 0; round < 5; round++) {
            NbdTestClient client = NbdTestClient.open(address(), "disk");
            for (int k = 0; k < 16; k++) {
                client.sendRequest(0, CMD_READ, k, (long) k * (512 << 10), 512 << 10);
            }
            byte[] payload = pattern(1 << 20, round);
            client.sendRequest(0, CMD_WRITE, 99, 0, payload.length, payload);
            if (round % 2 == 1) {
                client.readReply();
            }
            client.close();
        }
        assertTrue(waitFor(() -> pagePool.usedBytes() == 0 && aio.inFlight() == 0, 10),
                "held after the clients left: " + pagePool.usedBytes() + " bytes of pages, " + aio.inFlight() + " kiocbs");
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOfRange(content, 2 << 20, (2 << 20) + 8192), client.read(2 << 20, 8192));
        }
        assertTrue(waitFor(() -> openDescriptors() <= fds, 10), "descriptors leaked: " + openDescriptors() + " open, " + fds + " before");
    }
}
