package dev.jloop.nbd;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Export;
import dev.jloop.loop.LoopDevice;
import dev.jloop.posix.Posix;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.uring.BusyPoll;
import dev.jloop.uring.IoUring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static dev.jloop.nbd.Eventually.openDescriptors;
import static dev.jloop.nbd.Eventually.waitFor;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The io_uring connection loop's own edge cases: that plain connections run on it, back-pressure under
 * thousands of pipelined requests completed on other threads, sends that the socket takes in pieces,
 * clients that vanish in the middle of a reply or a WRITE payload, and a client that stops reading.
 * After each test the server is closed and every page must be back ({@link AbstractNbdServerTest}).
 * The rest of the protocol runs over the loop in the other transmission tests, which the build runs
 * with each loop.
 */
class TestNbdUringLoop
        extends AbstractNbdServerTest
{
    private final ExecutorService executor = Executors.newCachedThreadPool();

    @AfterEach
    void stopExecutor()
    {
        executor.shutdownNow();
    }

    @BeforeEach
    void requireIoUring()
    {
        CiAssumptions.assumeAvailable(NbdUringLoop.unavailabilityCause() == null, "io_uring connection loop: " + NbdUringLoop.unavailabilityCause());
    }

    private void startLoopServer(Map<String, String> options)
            throws IOException
    {
        Map<String, String> withLoop = new HashMap<>(options);
        withLoop.put(NbdSettings.NBD_LOOP, "io_uring");
        startServer(withLoop);
    }

    @Test
    void plainConnectionsRunOnTheLoopWithoutAWriterThread()
            throws Exception
    {
        startLoopServer(Map.of());
        byte[] data = pattern(64 << 10, 7);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertEquals(0, client.roundTrip(CMD_FLAG_FUA, CMD_WRITE, 4096, data.length, data));
            assertArrayEquals(data, client.read(4096, data.length));
            assertTrue(waitFor(() -> threadIn(NbdUringLoop.class.getName()), 5), "no thread runs the io_uring loop");
            assertFalse(Thread.getAllStackTraces().keySet().stream().anyMatch(thread -> thread.getName().endsWith("-writer")),
                    "a reply writer thread runs beside the loop");
        }
    }

    /**
     * The loop caps what a TCP connection holds unsent ({@link NbdUringLoop#limitUnsent}): the server's
     * socket, found among this process's descriptors, carries the cap once a client is served.
     */
    @Test
    void tcpConnectionsHoldLittleUnsent()
            throws Exception
    {
        startLoopServer(Map.of());
        int before = socketsWithUnsentLimit(NbdUringLoop.UNSENT_LIMIT);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(new byte[512], client.read(0, 512));
            assertEquals(before + 1, socketsWithUnsentLimit(NbdUringLoop.UNSENT_LIMIT), "the served socket does not carry TCP_NOTSENT_LOWAT");
        }
    }

    /** This process's sockets that hold at most {@code limit} bytes unsent. */
    static int socketsWithUnsentLimit(int limit)
    {
        int count = 0;
        for (int fd = 0; fd < 4096; fd++) {
            if (Posix.socketOption(fd, Posix.IPPROTO_TCP, Posix.TCP_NOTSENT_LOWAT) == limit) {
                count++;
            }
        }
        return count;
    }

    @Test
    void theThreadedPathStaysSelectable()
            throws Exception
    {
        startServer(Map.of(NbdSettings.NBD_LOOP, "threads"));
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(new byte[512], client.read(0, 512));
            assertTrue(Thread.getAllStackTraces().keySet().stream().anyMatch(thread -> thread.getName().endsWith("-writer")),
                    "no reply writer thread with --nbd-loop threads");
            assertFalse(threadIn(NbdUringLoop.class.getName()), "the io_uring loop runs though threads were chosen");
        }
    }

    /**
     * 3000 pipelined WRITEs, a FLUSH, then 3000 READs, over a device that completes on its own threads
     * (the eventfd path), with budgets of 8 requests and 64 KiB: the loop must stop receiving and go on
     * as requests come back, and answer every one with the right data.
     */
    @Test
    void thousandsOfPipelinedRequestsCompletedOnOtherThreads()
            throws Exception
    {
        int count = 3000;
        int size = 2048;
        LoopDevice device = new LoopDevice(MemoryBackingFile.builder((long) count * size).queued(4).build(), new AioKernel(), "queued");
        try {
            server = NbdServer.start(NbdTestConfig.tcp(Map.of(NbdSettings.NBD_LOOP, "io_uring",
                    NbdSettings.MAX_INFLIGHT_REQUESTS, "8", NbdSettings.MAX_INFLIGHT_BYTES, "64K")),
                    List.of(new Export("disk", "", device)), pagePool);
            try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                ByteBuffer writes = ByteBuffer.allocate(count * (NbdProtocol.REQUEST_SIZE + size) + NbdProtocol.REQUEST_SIZE);
                for (int i = 0; i < count; i++) {
                    header(writes, (i & 1) == 0 ? 0 : CMD_FLAG_FUA, CMD_WRITE, i, (long) i * size, size);
                    writes.put(pattern(size, i));
                }
                header(writes, 0, CMD_FLUSH, count, 0, 0);
                sendAndExpectReplies(client, writes, count + 1);

                ByteBuffer reads = ByteBuffer.allocate(count * NbdProtocol.REQUEST_SIZE);
                for (int i = 0; i < count; i++) {
                    header(reads, 0, CMD_READ, i, (long) i * size, size);
                }
                Future<?> readsSent = executor.submit(() -> {
                    client.sendRawWhileReading(reads.array());
                    return null;
                });
                boolean[] seen = new boolean[count + 1];
                for (int i = 0; i < count; i++) {
                    NbdTestClient.Reply reply = client.readReply();
                    assertEquals(0, reply.error());
                    int cookie = (int) reply.cookie();
                    assertFalse(seen[cookie], "two replies for " + cookie);
                    seen[cookie] = true;
                    assertArrayEquals(pattern(size, cookie), client.readData(size), "data of read " + cookie);
                }
                readsSent.get(30, TimeUnit.SECONDS);
            }
        }
        finally {
            server.close();
            server = null;
            assertEquals(0, pagePool.usedBytes(), "pages leaked");
            device.close();
        }
    }

    /** Replies far larger than the socket buffers, read in small pieces: every send after the first is partial. */
    @Test
    void repliesSentInPiecesArriveWhole()
            throws Exception
    {
        startLoopServer(Map.of());
        byte[] expected = pattern((int) DISK_SIZE, 3);
        disk.write(0, expected);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            for (int k = 0; k < 3; k++) {
                client.sendRequest(0, CMD_READ, k, 0, expected.length);
            }
            for (int k = 0; k < 3; k++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error());
                byte[] data = new byte[expected.length];
                for (int at = 0; at < data.length; ) {
                    int n = Math.min(data.length - at, k == 0 ? 777 : 1 << 16);
                    System.arraycopy(client.readData(n), 0, data, at, n);
                    at += n;
                    if (k == 0 && at % (1 << 20) < 777) {
                        Thread.sleep(20);
                    }
                }
                assertArrayEquals(expected, data, "reply " + reply.cookie());
            }
        }
    }

    @Test
    void aClientThatVanishesInTheMiddleOfRepliesLeavesNothingBehind()
            throws Exception
    {
        startLoopServer(Map.of());
        disk.write(0, pattern((int) DISK_SIZE, 5));
        long fds = openDescriptors();
        for (int round = 0; round < 3; round++) {
            NbdTestClient client = NbdTestClient.open(address(), "disk");
            for (int k = 0; k < 12; k++) {
                client.sendRequest(0, CMD_READ, k, 0, DISK_SIZE);
            }
            client.readReply();
            client.readData(100_000);
            client.close();
        }
        assertTrue(waitFor(() -> pagePool.usedBytes() == 0, 10), "pages held after the clients left: " + pagePool.usedBytes());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOf(pattern((int) DISK_SIZE, 5), 4096), client.read(0, 4096));
        }
        assertTrue(waitFor(() -> openDescriptors() <= fds, 10), "descriptors leaked: " + openDescriptors() + " open, " + fds + " before");
    }

    @Test
    void aClientThatVanishesInTheMiddleOfAWritePayloadLeavesNothingBehind()
            throws Exception
    {
        startLoopServer(Map.of());
        for (int round = 0; round < 3; round++) {
            NbdTestClient client = NbdTestClient.open(address(), "disk");
            ByteBuffer partial = ByteBuffer.allocate(NbdProtocol.REQUEST_SIZE + 300_000);
            header(partial, 0, CMD_WRITE, 1, 0, 1 << 20);
            client.sendRaw(partial.array());
            Thread.sleep(50);
            client.close();
        }
        assertTrue(waitFor(() -> pagePool.usedBytes() == 0, 10), "pages held after the clients left: " + pagePool.usedBytes());
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(new byte[4096], client.read(0, 4096), "a WRITE whose payload never arrived reached the disk");
        }
    }

    @Test
    void multishotReceiveUnlessSingleIsChosen()
            throws Exception
    {
        CiAssumptions.assumeAvailable(IoUring.multishotReceiveUnavailabilityCause() == null,
                "multishot receive: " + IoUring.multishotReceiveUnavailabilityCause());
        for (String receive : List.of("multishot", "single")) {
            long armed = MultishotReceiver.ARMED.get();
            startLoopServer(Map.of(NbdSettings.NBD_RECV, receive));
            byte[] data = pattern(200_000, 2);
            try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                assertEquals(0, client.roundTrip(0, CMD_WRITE, 0, data.length, data));
                assertArrayEquals(data, client.read(0, data.length));
            }
            assertEquals(receive.equals("multishot"), MultishotReceiver.ARMED.get() > armed, "multishot receive armed with --nbd-recv " + receive);
            closeServer();
        }
    }

    /** A WRITE and a READ sent one byte at a time: every header and the payload arrive in as many pieces. */
    @Test
    void requestsSentOneByteAtATime()
            throws Exception
    {
        startLoopServer(Map.of());
        byte[] data = pattern(3000, 11);
        ByteBuffer stream = ByteBuffer.allocate(3 * NbdProtocol.REQUEST_SIZE + data.length);
        header(stream, 0, CMD_WRITE, 1, 8192 + 5, data.length);
        stream.put(data);
        header(stream, 0, CMD_READ, 2, 8192 + 5, data.length);
        header(stream, 0, CMD_FLUSH, 3, 0, 0);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            byte[] bytes = stream.array();
            for (int i = 0; i < bytes.length; i++) {
                client.sendRaw(new byte[] {bytes[i]});
                if (i % 64 == 0) {
                    Thread.sleep(1);
                }
            }
            boolean[] seen = new boolean[4];
            for (int k = 0; k < 3; k++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error(), "request " + reply.cookie());
                assertFalse(seen[(int) reply.cookie()], "two replies for " + reply.cookie());
                seen[(int) reply.cookie()] = true;
                if (reply.cookie() == 2) {
                    assertArrayEquals(data, client.readData(data.length));
                }
            }
        }
        assertArrayEquals(data, disk.read(8192 + 5, data.length));
    }

    /**
     * Hundreds of pipelined WRITEs of odd sizes under a budget of two requests: the loop stops taking
     * bytes while the socket fills, so every receive buffer fills up and headers and payloads land
     * across buffer boundaries at every offset; then all of it read back.
     */
    @Test
    void requestsAcrossReceiveBufferBoundariesUnderBackPressure()
            throws Exception
    {
        startLoopServer(Map.of(NbdSettings.MAX_INFLIGHT_REQUESTS, "2"));
        int count = 400;
        int[] sizes = new int[count];
        int total = 0;
        for (int i = 0; i < count; i++) {
            sizes[i] = 1 + (i * 1237) % 4095;
            total += NbdProtocol.REQUEST_SIZE + sizes[i];
        }
        ByteBuffer writes = ByteBuffer.allocate(total);
        for (int i = 0; i < count; i++) {
            header(writes, 0, CMD_WRITE, i, (long) i * 4096, sizes[i]);
            writes.put(pattern(sizes[i], i));
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            sendAndExpectReplies(client, writes, count);
            ByteBuffer reads = ByteBuffer.allocate(count * NbdProtocol.REQUEST_SIZE);
            for (int i = 0; i < count; i++) {
                header(reads, 0, CMD_READ, i, (long) i * 4096, sizes[i]);
            }
            Future<?> readsSent = executor.submit(() -> {
                client.sendRawWhileReading(reads.array());
                return null;
            });
            for (int i = 0; i < count; i++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error());
                int cookie = (int) reply.cookie();
                assertArrayEquals(pattern(sizes[cookie], cookie), client.readData(sizes[cookie]), "data of read " + cookie);
            }
            readsSent.get(30, TimeUnit.SECONDS);
        }
    }

    /**
     * WRITEs larger than all receive buffers together (received straight into their pages) and just
     * below and above the size where that starts, pipelined with READs of them in one stream.
     */
    @Test
    void writesLargerThanTheReceiveBuffers()
            throws Exception
    {
        startLoopServer(Map.of());
        int[] sizes = {1 << 20, 200_000, NbdUringLoop.DIRECT_PAYLOAD - 100, NbdUringLoop.DIRECT_PAYLOAD + 1, 3 << 20};
        long[] offsets = new long[sizes.length];
        int total = 0;
        for (int i = 0; i < sizes.length; i++) {
            offsets[i] = i == 0 ? 512 : offsets[i - 1] + sizes[i - 1];
            total += 2 * NbdProtocol.REQUEST_SIZE + sizes[i];
        }
        ByteBuffer stream = ByteBuffer.allocate(total);
        for (int i = 0; i < sizes.length; i++) {
            header(stream, 0, CMD_WRITE, i, offsets[i], sizes[i]);
            stream.put(pattern(sizes[i], i + 20));
            header(stream, 0, CMD_READ, 100 + i, offsets[i], sizes[i]);
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            Future<?> sent = executor.submit(() -> {
                client.sendRawWhileReading(stream.array());
                return null;
            });
            for (int k = 0; k < 2 * sizes.length; k++) {
                NbdTestClient.Reply reply = client.readReply();
                assertEquals(0, reply.error(), "request " + reply.cookie());
                if (reply.cookie() >= 100) {
                    int i = (int) reply.cookie() - 100;
                    assertArrayEquals(pattern(sizes[i], i + 20), client.readData(sizes[i]), "data of write " + i);
                }
            }
            sent.get(30, TimeUnit.SECONDS);
        }
    }

    @Test
    void aClientThatStopsReadingIsClosedAfterTheReplyTimeout()
            throws Exception
    {
        startLoopServer(Map.of(NbdSettings.REPLY_TIMEOUT, "1s"));
        disk.write(0, pattern((int) DISK_SIZE, 9));
        try (NbdTestClient stalled = NbdTestClient.open(address(), "disk")) {
            for (int k = 0; k < 8; k++) {
                stalled.sendRequest(0, CMD_READ, k, 0, DISK_SIZE);
            }
            assertTrue(waitFor(() -> pagePool.usedBytes() > 0, 5), "the reads never took pages");
            assertTrue(waitFor(() -> pagePool.usedBytes() == 0, 15), "the connection was not closed: " + pagePool.usedBytes() + " bytes of pages held");
            assertThrows(IOException.class, () -> {
                for (int k = 0; k < 8; k++) {
                    stalled.readReply();
                    stalled.readData((int) DISK_SIZE);
                }
            }, "every reply arrived though the connection was closed");
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOf(pattern((int) DISK_SIZE, 9), 4096), client.read(0, 4096), "the server no longer serves");
        }
    }

    /**
     * A client with one request at a time, over a device that completes on its own threads (the eventfd
     * path): once it has sent enough that way, the loop watches for the next completion instead of
     * sleeping and finds them so (the window is wide here, so that a loaded machine does not decide),
     * and every answer is right. With {@code --busy-poll 0} it never polls.
     */
    @Test
    void aClientWithOneRequestAtATimeIsAnsweredByPolling()
            throws Exception
    {
        int count = 400;
        for (String micros : List.of("0", "100000")) {
            LoopDevice device = new LoopDevice(MemoryBackingFile.builder(count * 4096L).queued(2).build(), new AioKernel(), "queued");
            try {
                server = NbdServer.start(NbdTestConfig.tcp(Map.of(NbdSettings.NBD_LOOP, "io_uring", NbdSettings.BUSY_POLL, micros)),
                        List.of(new Export("disk", "", device)), pagePool);
                long before = BusyPoll.found();
                try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                    for (int i = 0; i < count; i++) {
                        byte[] data = pattern(4096, i);
                        assertEquals(0, client.roundTrip(0, CMD_WRITE, i * 4096L, data.length, data));
                        assertArrayEquals(data, client.read(i * 4096L, data.length), "read " + i);
                    }
                }
                long polled = BusyPoll.found() - before;
                if (micros.equals("0")) {
                    assertEquals(0, polled, "completions found by polling with --busy-poll 0");
                }
                else {
                    // only those that arrive while it watches count: a request already in the socket when
                    // the receive is submitted completes at once, so how many depends on the client's speed
                    assertTrue(polled > 0, "no completion was found by polling");
                }
            }
            finally {
                server.close();
                server = null;
                device.close();
            }
        }
    }

    /**
     * A client with one long request at a time (256 KiB WRITEs and READs) is never watched for: its
     * requests take long enough that polling would only spin.
     */
    @Test
    void aClientWithOneLongRequestAtATimeIsNotPolledFor()
            throws Exception
    {
        int count = 200;
        int length = 256 * 1024;
        LoopDevice device = new LoopDevice(MemoryBackingFile.builder(8L * length).queued(2).build(), new AioKernel(), "queued");
        try {
            server = NbdServer.start(NbdTestConfig.tcp(Map.of(NbdSettings.NBD_LOOP, "io_uring", NbdSettings.BUSY_POLL, "100000")),
                    List.of(new Export("disk", "", device)), pagePool);
            long before = BusyPoll.found();
            try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                for (int i = 0; i < count; i++) {
                    byte[] data = pattern(length, i);
                    long offset = (long) (i % 8) * length;
                    assertEquals(0, client.roundTrip(0, CMD_WRITE, offset, data.length, data));
                    assertArrayEquals(data, client.read(offset, data.length), "read " + i);
                }
            }
            assertEquals(0, BusyPoll.found() - before, "completions found by polling for 256 KiB requests");
        }
        finally {
            server.close();
            server = null;
            device.close();
        }
    }

    private static void header(ByteBuffer buffer, int flags, int type, long cookie, long offset, int length)
    {
        buffer.putInt(REQUEST_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(cookie)
                .putLong(offset)
                .putInt(length);
    }

    private static byte[] pattern(int length, int seed)
    {
        byte[] data = new byte[length];
        for (int i = 0; i < length; i++) {
            data[i] = (byte) (seed * 31 + i / 512 + (i & 0xff));
        }
        return data;
    }

    private static boolean threadIn(String className)
    {
        return Thread.getAllStackTraces().values().stream()
                .flatMap(Stream::of)
                .anyMatch(frame -> frame.getClassName().equals(className));
    }

    /** Sends {@code requests} while reading, and expects {@code count} successful replies, one per cookie 0 to count - 1. */
    private void sendAndExpectReplies(NbdTestClient client, ByteBuffer requests, int count)
            throws Exception
    {
        Future<?> sent = executor.submit(() -> {
            client.sendRawWhileReading(requests.array());
            return null;
        });
        boolean[] seen = new boolean[count];
        for (int i = 0; i < count; i++) {
            NbdTestClient.Reply reply = client.readReply();
            assertEquals(0, reply.error(), "request " + reply.cookie());
            assertFalse(seen[(int) reply.cookie()], "two replies for " + reply.cookie());
            seen[(int) reply.cookie()] = true;
        }
        sent.get(30, TimeUnit.SECONDS);
    }
}
