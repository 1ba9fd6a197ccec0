package dev.jloop.nbd;

import dev.jloop.api.Export;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_REQ_ONE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.IHAVEOPT;
import static dev.jloop.nbd.NbdProtocol.NBD_EINVAL;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOSPC;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.OPT_INFO;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_SET_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_STRUCTURED_REPLY;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_INVALID;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_TOO_BIG;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNSUP;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Clients that break the rules, on raw sockets: every request gets a defined answer (an error
 * reply, or the connection closed where the stream can no longer be parsed), memory stays within
 * the connection's budget, and a well-behaved client keeps being served meanwhile.
 */
class TestNbdHostileClients
        extends AbstractNbdServerTest
{
    /** What the well-behaved client's few-byte requests hold of the shared pool: a page or two. */
    private static final int OTHER_CLIENT = 64 << 10;

    private void assertServed()
            throws IOException
    {
        try (NbdTestClient good = NbdTestClient.open(address(), "disk")) {
            byte[] data = {4, 5, 6};
            assertEquals(0, good.roundTrip(0, CMD_WRITE, 100, 3, data));
            assertArrayEquals(data, good.read(100, 3));
        }
    }

    @Test
    void truncatedHandshakesEndOnlyThemselves()
            throws IOException
    {
        startServer(Map.of());
        byte[][] prefixes = {
                new byte[0],
                new byte[2],                                                     // half the client flags
                ByteBuffer.allocate(4 + 8).putInt(FLAG_C_FIXED_NEWSTYLE).putLong(IHAVEOPT).array(), // half an option header
                ByteBuffer.allocate(4 + 16 + 10).putInt(FLAG_C_FIXED_NEWSTYLE).putLong(IHAVEOPT).putInt(OPT_GO).putInt(100).array(), // data cut short
        };
        for (byte[] prefix : prefixes) {
            try (NbdTestClient client = new NbdTestClient(address())) {
                client.readGreeting();
                client.sendRaw(prefix);
            }
            assertServed();
        }
        // cut off in the middle of a request header and of a WRITE payload
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            client.sendRaw(new byte[] {0x25, 0x60, (byte) 0x95});
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            client.sendRequest(0, CMD_WRITE, 1, 0, 1 << 20, new byte[1000]);
        }
        assertServed();
        server.close();
        assertEquals(0, pagePool.usedBytes());
    }

    @Test
    void unknownAndOversizedOptionsGetDefinedAnswers()
            throws IOException
    {
        startServer(Map.of());
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE);
            for (int option : new int[] {0, 4, 11, 12, 1000, -1}) {
                client.sendOption(option, new byte[5]);
                NbdTestClient.OptionReply reply = client.readOptionReply();
                assertEquals(option, reply.option());
                assertEquals(REP_ERR_UNSUP, reply.type());
            }
            // just above the limit: read, dropped, refused
            client.sendOptionHeader(OPT_INFO, NbdHandshake.MAX_OPTION_LENGTH + 1);
            client.sendRaw(new byte[NbdHandshake.MAX_OPTION_LENGTH + 1]);
            assertEquals(REP_ERR_TOO_BIG, client.readOptionReply().type());
            client.sendOptionHeader(OPT_LIST_META_CONTEXT, NbdHandshake.MAX_OPTION_LENGTH + 1);
            client.sendRaw(new byte[NbdHandshake.MAX_OPTION_LENGTH + 1]);
            assertEquals(REP_ERR_TOO_BIG, client.readOptionReply().type());
            // lengths inside the data that point past it
            client.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, client.readOptionReply().type());
            client.sendOption(OPT_SET_META_CONTEXT, ByteBuffer.allocate(8).putInt(-1).putInt(0).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_SET_META_CONTEXT, ByteBuffer.allocate(8).putInt(0).putInt(-1).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_GO, ByteBuffer.allocate(6).putInt(Integer.MAX_VALUE).putShort((short) 0).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            NbdTestClient.OptionReply reply;
            while ((reply = client.readOptionReply()).type() != REP_ACK) {
                assertEquals(NbdProtocol.REP_INFO, reply.type());
            }
            assertEquals(0, client.roundTrip(0, CMD_FLUSH, 0, 0, null));
        }
        // 4 GiB of option data is not worth reading: the connection is dropped at once
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE);
            client.sendOptionHeader(OPT_INFO, 0xffffffffL);
            assertTrue(client.isClosedByServer());
        }
        assertServed();
    }

    @Test
    void outOfRangeAndOverflowingOffsetsAreRefused()
            throws IOException
    {
        startServer(Map.of());
        long[][] ranges = {
                {DISK_SIZE, 1},
                {DISK_SIZE - 1, 2},
                {DISK_SIZE + 1, 0},
                {Long.MAX_VALUE, 1},
                {Long.MIN_VALUE, 1},         // 2^63 unsigned
                {-1, 1},                     // 2^64 - 1
                {-4096, 8192},               // offset + length wraps past 2^64
                {4096, 0xffffffffL},
        };
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (long[] range : ranges) {
                long offset = range[0];
                long length = range[1];
                String where = offset + "+" + length;
                boolean pastEnd = offset >= 0;
                assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_READ, offset, length, null), "READ " + where);
                assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_TRIM, offset, length, null), "TRIM " + where);
                assertEquals(NBD_EINVAL, client.roundTrip(0, CMD_CACHE, offset, length, null), "CACHE " + where);
                assertEquals(pastEnd ? NBD_ENOSPC : NBD_EINVAL, client.roundTrip(0, CMD_WRITE_ZEROES, offset, length, null), "WRITE_ZEROES " + where);
                if (length <= 8192) {
                    assertEquals(pastEnd ? NBD_ENOSPC : NBD_EINVAL,
                            client.roundTrip(0, CMD_WRITE, offset, length, new byte[(int) length]), "WRITE " + where);
                }
            }
            assertEquals(0, client.roundTrip(0, CMD_READ, DISK_SIZE, 0, null), "an empty read at the end is fine");
        }
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            for (long[] range : ranges) {
                for (int type : new int[] {CMD_READ, CMD_BLOCK_STATUS}) {
                    client.sendRequest(0, type, 5, range[0], range[1]);
                    NbdTestClient.Chunk chunk = client.readChunk();
                    assertEquals(REPLY_TYPE_ERROR, chunk.type(), NbdProtocol.commandName(type) + " " + range[0] + "+" + range[1]);
                    assertTrue(chunk.done());
                    assertEquals(NBD_EINVAL, chunk.buffer().getInt());
                }
            }
        }
        assertTrue(disk.log().stream().noneMatch(op -> !op.startsWith("FLUSH")), "nothing out of range reached the device: " + disk.log());
    }

    @Test
    void unknownCommandsAndFlagsAreInvalid()
            throws IOException
    {
        startServer(Map.of());
        // FUA is negotiated, so every command takes it (the spec's MUST)
        int[][] allowed = {
                {CMD_READ, CMD_FLAG_FUA},
                {CMD_WRITE, CMD_FLAG_FUA},
                {CMD_FLUSH, CMD_FLAG_FUA},
                {CMD_TRIM, CMD_FLAG_FUA},
                {CMD_CACHE, CMD_FLAG_FUA},
                {CMD_WRITE_ZEROES, CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO},
        };
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (int type : new int[] {8, 9, 100, 0xfffe, 0xffff}) {
                assertEquals(NBD_EINVAL, client.roundTrip(0, type, 0, 4096, null), "command " + type);
            }
            for (int[] command : allowed) {
                for (int bit = 0; bit < 16; bit++) {
                    int flag = 1 << bit;
                    if ((command[1] & flag) != 0) {
                        continue;
                    }
                    byte[] payload = command[0] == CMD_WRITE ? new byte[16] : null;
                    assertEquals(NBD_EINVAL, client.roundTrip(flag, command[0], 0, command[0] == CMD_FLUSH ? 0 : 16, payload),
                            NbdProtocol.commandName(command[0]) + " flag " + flag);
                }
            }
        }
        try (NbdTestClient client = NbdTestClient.openStructured(address(), "disk", BASE_ALLOCATION)) {
            for (int bit = 0; bit < 16; bit++) {
                int flag = 1 << bit;
                if (flag == CMD_FLAG_FUA) {
                    continue;
                }
                if (flag != CMD_FLAG_DF) {
                    client.sendRequest(flag, CMD_READ, 1, 0, 16);
                    assertEquals(REPLY_TYPE_ERROR, client.readChunk().type(), "READ flag " + flag);
                }
                if (flag != CMD_FLAG_REQ_ONE) {
                    client.sendRequest(flag, CMD_BLOCK_STATUS, 1, 0, 16);
                    assertEquals(REPLY_TYPE_ERROR, client.readChunk().type(), "BLOCK_STATUS flag " + flag);
                }
            }
        }
        assertTrue(disk.log().isEmpty(), "refused requests reached the device: " + disk.log());
    }

    @Test
    void floodOfLargeWritesStaysWithinTheBudget()
            throws Exception
    {
        MemoryBlockDevice big = new MemoryBlockDevice(1L << 30, MemoryBlockDevice.allCapabilities());
        int budget = 16 << 20;
        startServer(Map.of(NbdSettings.MAX_INFLIGHT_BYTES, "16M"), List.of(new Export("disk", "", big)));
        int writes = 6;
        int length = NbdRequestReader.MAX_REQUEST_LENGTH;
        byte[] payload = new byte[length];
        new Random(5).nextBytes(payload);
        try (PeakSampler peak = new PeakSampler();
                NbdTestClient flood = NbdTestClient.open(address(), "disk")) {
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread sender = new Thread(() -> {
                try {
                    for (int i = 0; i < writes; i++) {
                        flood.sendRequest(0, CMD_WRITE, i, (long) i * length, length, payload);
                    }
                }
                catch (Throwable t) {
                    failure.set(t);
                }
            });
            sender.start();
            // meanwhile another client is served
            for (int i = 0; i < 20; i++) {
                assertServedOn(big);
            }
            sender.join(120_000);
            assertNull(failure.get());
            for (int i = 0; i < writes; i++) {
                NbdTestClient.Reply reply = flood.readReply();
                assertEquals(0, reply.error(), "write " + reply.cookie());
            }
            // a request above the budget takes the whole budget: one at a time (plus a page of the other client's)
            assertTrue(peak.max() <= Math.max(budget, length) + OTHER_CLIENT, "pages in use peaked at " + peak.max());
        }
        assertArrayEquals(java.util.Arrays.copyOfRange(payload, length - 100, length), big.read((long) writes * length - 100, 100));
    }

    @Test
    void floodOfReadsWithoutTakingRepliesStallsOnlyThatClient()
            throws Exception
    {
        int budget = 8 << 20;
        startServer(Map.of(NbdSettings.MAX_INFLIGHT_BYTES, "8M", NbdSettings.CLOSE_TIMEOUT, "500ms"));
        byte[] first = {9, 8, 7};
        disk.write(0, first);
        try (PeakSampler peak = new PeakSampler()) {
            try (NbdTestClient flood = NbdTestClient.open(address(), "disk")) {
                AtomicBoolean sent = new AtomicBoolean();
                Thread sender = new Thread(() -> {
                    try {
                        for (int i = 0; i < 5000; i++) {
                            flood.sendRequest(0, CMD_READ, i, (i % 8) << 20, 1 << 20);
                        }
                        sent.set(true);
                    }
                    catch (IOException e) {
                        // the server stops reading once the budget is used up: expected
                    }
                });
                sender.setDaemon(true);
                sender.start();
                Thread.sleep(500);
                for (int i = 0; i < 20; i++) {
                    assertServed();
                }
                assertTrue(peak.max() <= budget + OTHER_CLIENT, "pages in use peaked at " + peak.max() + " with a budget of " + budget);
                // the flooding client still gets correct answers, in some order, when it reads
                for (int i = 0; i < 16; i++) {
                    NbdTestClient.Reply reply = flood.readReply();
                    assertEquals(0, reply.error());
                    byte[] data = flood.readData(1 << 20);
                    if ((reply.cookie() % 8) == 0) {
                        assertArrayEquals(first, java.util.Arrays.copyOf(data, 3));
                    }
                }
            }
            // it went away without reading the rest: its pages come back and others are served
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (pagePool.usedBytes() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(0, pagePool.usedBytes(), "pages of the closed connection");
            assertServed();
        }
    }

    private void assertServedOn(MemoryBlockDevice device)
            throws IOException
    {
        try (NbdTestClient good = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, good.roundTrip(0, CMD_FLUSH, 0, 0, null));
            assertEquals(3, good.read(device.size() - 3, 3).length);
        }
    }

    /** Samples the pages in use of the test's pool until closed. */
    private final class PeakSampler
            implements AutoCloseable
    {
        private final AtomicLong max = new AtomicLong();
        private final AtomicBoolean stop = new AtomicBoolean();
        private final Thread thread;

        PeakSampler()
        {
            thread = new Thread(() -> {
                while (!stop.get()) {
                    max.accumulateAndGet(pagePool.usedBytes(), Math::max);
                    java.util.concurrent.locks.LockSupport.parkNanos(20_000);
                }
            }, "peak-sampler");
            thread.setDaemon(true);
            thread.start();
        }

        long max()
        {
            return max.get();
        }

        @Override
        public void close()
                throws InterruptedException
        {
            stop.set(true);
            thread.join();
        }
    }
}
