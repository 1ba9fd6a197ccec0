package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.api.FrontendConfig;
import dev.jloop.iter.PagePool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.jloop.nbd.Eventually.waitFor;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.INFO_BLOCK_SIZE;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_INFO;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The page pool and threads under clients that misbehave or a machine that runs short: servers with small pools of their own. */
// Without the fixes these hang rather than fail: the timeout turns that into a failure.
@Timeout(120)
class TestNbdServerResources
{
    private static final int READ_LENGTH = 4 << 20;

    private final MemoryBlockDevice disk = new MemoryBlockDevice(8 << 20, MemoryBlockDevice.allCapabilities());
    private final List<Export> exports = List.of(new Export("disk", "a disk", disk));
    private PagePool pagePool;
    private NbdServer server;

    @AfterEach
    void closeServer()
    {
        if (server != null) {
            server.close();
            assertEquals(0, pagePool.usedBytes(), "pages leaked");
        }
        if (pagePool != null) {
            pagePool.close();
        }
    }

    @Test
    void clientsThatStopReadingRepliesStallOnlyThemselves()
            throws Exception
    {
        pagePool = new PagePool(32L << 20);
        server = NbdServer.start(config(Map.of("max-inflight-bytes", "32M", "reply-timeout", "1s")), exports, pagePool);
        byte[] expected = new byte[READ_LENGTH];
        for (int i = 0; i < expected.length; i += 4096) {
            expected[i] = (byte) (i >> 12);
        }
        disk.write(0, expected);

        List<NbdTestClient> stalled = new ArrayList<>();
        ExecutorService normal = Executors.newSingleThreadExecutor();
        try {
            // Each asks for the whole pool and never reads: what the sockets do not buffer holds pages.
            // The eight requests go in one write, so that the reader hands their replies to the writer
            // thread and reads on; a few it would write itself, blocking before it takes more pages.
            // Their receive buffers are fixed and small: autotuned, one could grow to tcp_rmem's
            // maximum (32 MiB on some systems) and take all its replies before the reply timeout.
            for (int i = 0; i < 4; i++) {
                NbdTestClient client = NbdTestClient.open(address(), "disk", 64 << 10);
                stalled.add(client);
                client.sendRaw(reads(8, READ_LENGTH));
            }
            long stalledAt = System.nanoTime();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (pagePool.usedBytes() < pagePool.capacity() - READ_LENGTH && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertTrue(pagePool.usedBytes() >= pagePool.capacity() - READ_LENGTH, "the stalled clients did not take the pool: " + pagePool.usedBytes());

            long start = System.nanoTime();
            Future<byte[]> read = normal.submit(() -> {
                try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
                    client.read(0, READ_LENGTH);
                    return client.read(0, READ_LENGTH);
                }
            });
            assertArrayEquals(expected, read.get(20, TimeUnit.SECONDS), "a reading client was not served while others stalled");
            long waitedMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(waitedMillis < 15_000, "served after " + waitedMillis + " ms");
            assertTrue(pagePool.usedBytes() <= pagePool.capacity());
            // The stalled clients still have replies the sockets cannot take: give the reply timeout (1 s)
            // time to see them before reading, which would take them.
            long sinceStall = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - stalledAt);
            Thread.sleep(Math.max(0, 2500 - sinceStall));
            int closed = 0;
            for (NbdTestClient client : stalled) {
                // what was sent before the close, then the end; or, where pages came back in time, every reply
                if (normal.submit(() -> endsBeforeAllReplies(client)).get(20, TimeUnit.SECONDS)) {
                    closed++;
                }
            }
            assertTrue(closed > 0, "no stalled connection was closed");
        }
        finally {
            normal.shutdownNow();
            for (NbdTestClient client : stalled) {
                client.close();
            }
        }
    }

    /**
     * Four READs that complete inside the reader's own submission are few enough for the reader to
     * write their replies itself; it then blocks on a client that reads nothing, and the watchdog
     * must see that write as replies without progress, simple or structured.
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void aClientThatStopsReadingRepliesTheReaderWritesIsClosed(boolean structured)
            throws Exception
    {
        pagePool = new PagePool(64L << 20);
        // The threaded path: with the io_uring loop no thread writes (TestNbdUringLoop covers that case).
        server = NbdServer.start(config(Map.of("max-inflight-bytes", "64M", "reply-timeout", "1s", "nbd-loop", "threads")), exports, pagePool);
        byte[] expected = new byte[8 << 20];
        for (int i = 0; i < expected.length; i += 4096) {
            expected[i] = (byte) ((i >> 12) | 1);
        }
        disk.write(0, expected);

        try (NbdTestClient stalled = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            // 32 MiB of replies, far more than the sockets buffer, asked for in one write
            stalled.sendRaw(reads(4, expected.length));
            assertTrue(waitFor(() -> readerWritesReplies(), 10), "the reader thread did not write the replies itself");
            assertTrue(waitFor(() -> pagePool.usedBytes() == 0, 10), "the connection was not closed: " + pagePool.usedBytes() + " bytes of pages held");
            assertThrows(IOException.class, () -> {
                byte[] data = new byte[expected.length];
                for (int k = 0; k < 4; k++) {
                    if (structured) {
                        assertArrayEquals(expected, NbdTestClient.assemble(stalled.readChunks(), 0, expected.length));
                    }
                    else {
                        assertEquals(0, stalled.readReply().error());
                        stalled.readFully(data);
                    }
                }
            }, "every reply arrived though the connection was closed");
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(Arrays.copyOf(expected, 4096), client.read(0, 4096), "the server no longer serves");
        }
    }

    /** {@code count} READ requests of {@code length} bytes from offset 0, cookies 0 up. */
    private static byte[] reads(int count, int length)
    {
        ByteBuffer requests = ByteBuffer.allocate(count * NbdProtocol.REQUEST_SIZE);
        for (int k = 0; k < count; k++) {
            requests.putInt(REQUEST_MAGIC)
                    .putShort((short) 0)
                    .putShort((short) CMD_READ)
                    .putLong(k)
                    .putLong(0)
                    .putInt(length);
        }
        return requests.array();
    }

    /** Whether a thread other than a reply writer is writing replies: the reader answering its own completions. */
    private static boolean readerWritesReplies()
    {
        for (Map.Entry<Thread, StackTraceElement[]> thread : Thread.getAllStackTraces().entrySet()) {
            if (thread.getKey().getName().endsWith("-writer")) {
                continue;
            }
            for (StackTraceElement frame : thread.getValue()) {
                if (frame.getClassName().equals(NbdReplyWriter.class.getName()) && frame.getMethodName().equals("writeSome")) {
                    return true;
                }
            }
        }
        return false;
    }


    @Test
    void aClientThatReadsSlowlyIsNotDropped()
            throws Exception
    {
        MemoryBlockDevice large = new MemoryBlockDevice(32 << 20, MemoryBlockDevice.allCapabilities());
        byte[] expected = new byte[32 << 20];
        for (int i = 0; i < expected.length; i += 4096) {
            expected[i] = (byte) (i >> 12);
        }
        large.write(0, expected);
        pagePool = new PagePool(64L << 20);
        server = NbdServer.start(config(Map.of("reply-timeout", "1s")), List.of(new Export("large", "a disk", large)), pagePool);
        try (NbdTestClient client = NbdTestClient.open(address(), "large")) {
            client.sendRequest(0, CMD_READ, 1, 0, expected.length);
            assertEquals(0, client.readReply().error());
            // about 5 MB/s: one 32 MiB reply takes seconds longer than the timeout, each MiB of it much less
            byte[] data = new byte[expected.length];
            for (int at = 0; at < data.length; at += 256 << 10) {
                byte[] piece = new byte[256 << 10];
                client.readFully(piece);
                System.arraycopy(piece, 0, data, at, piece.length);
                Thread.sleep(50);
            }
            assertArrayEquals(expected, data);
            assertArrayEquals(new byte[] {0, 0, 0}, client.read(1, 3), "the connection was closed under a client that reads");
        }
    }

    @Test
    void theAcceptThreadSurvivesAConnectionThreadThatCannotStart()
            throws Exception
    {
        pagePool = new PagePool(16L << 20);
        AtomicInteger threads = new AtomicInteger();
        ThreadFactory failingOnce = runnable -> {
            if (threads.getAndIncrement() == 0) {
                return new Thread(runnable)
                {
                    @Override
                    public synchronized void start()
                    {
                        throw new OutOfMemoryError("unable to create native thread: possibly out of memory or process/resource limits reached");
                    }
                };
            }
            return new Thread(runnable);
        };
        server = NbdServer.start(config(Map.of()), exports, pagePool, failingOnce);
        disk.write(0, new byte[] {5, 6, 7});
        try (NbdTestClient refused = new NbdTestClient(address())) {
            assertTrue(refused.isClosedByServer(), "the connection whose thread did not start was left open");
        }
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(new byte[] {5, 6, 7}, client.read(0, 3));
        }
        assertEquals(2, threads.get());
    }

    @Test
    void theLargestPayloadAdvertisedFitsThePagePool()
            throws Exception
    {
        pagePool = new PagePool(8L << 20);
        server = NbdServer.start(config(Map.of()), exports, pagePool);
        assertEquals(8 << 20, advertisedMaximum());
        server.close();
        server = null;

        pagePool.close();
        pagePool = new PagePool(256L << 20);
        server = NbdServer.start(config(Map.of()), exports, pagePool);
        assertEquals(32 << 20, advertisedMaximum(), "the protocol's 32 MiB when the pool is larger");
    }

    @Test
    void thePoolItMadeGrowsWithTheLoadAndShrinksWhenIdle()
            throws Exception
    {
        PagePool own = new PagePool(64L << 20);
        pagePool = own;
        server = NbdServer.startOwning(config(Map.of("page-pool-idle", "200ms")), exports, own, Thread::new);
        assertEquals(0, own.slabBytes(), "a fresh server holds no page-pool memory");
        byte[] expected = new byte[READ_LENGTH];
        expected[READ_LENGTH - 1] = 42;
        disk.write(0, expected);
        try (NbdTestClient client = NbdTestClient.open(address(), "disk")) {
            assertArrayEquals(expected, client.read(0, READ_LENGTH));
            assertTrue(own.slabBytes() >= READ_LENGTH, "the pool grew to serve a 4 MiB read: " + own.slabBytes());
            // a client that keeps asking keeps the pool
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(600);
            while (System.nanoTime() < deadline) {
                assertArrayEquals(expected, client.read(0, READ_LENGTH));
            }
            assertTrue(own.slabBytes() >= READ_LENGTH, "trimmed while busy: " + own.slabBytes());
            assertTrue(waitFor(() -> own.slabBytes() == 0, 5), "an idle server kept " + own.slabBytes() + " bytes of page-pool memory");
            assertArrayEquals(expected, client.read(0, READ_LENGTH), "a trimmed pool serves again");
        }
    }

    @Test
    void aServerThatFailsToStartClosesThePoolItMade()
    {
        PagePool own = new PagePool(8L << 20);
        assertThrows(IllegalArgumentException.class,
                () -> NbdServer.startOwning(config(Map.of("no-such-option", "1")), exports, own, Thread::new));
        assertEquals(List.of(), own.slabs(), "the pool's slabs are still held");
    }

    private int advertisedMaximum()
            throws IOException
    {
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk", INFO_BLOCK_SIZE));
            int maximum = -1;
            while (true) {
                NbdTestClient.OptionReply reply = client.readOptionReply();
                if (reply.type() == REP_ACK) {
                    return maximum;
                }
                assertEquals(REP_INFO, reply.type());
                ByteBuffer data = reply.buffer();
                if (data.getShort() == INFO_BLOCK_SIZE) {
                    data.getInt();
                    data.getInt();
                    maximum = data.getInt();
                }
            }
        }
    }

    /** Reads what the server sent; true when the connection ended before all eight replies. */
    private static boolean endsBeforeAllReplies(NbdTestClient client)
    {
        try {
            byte[] data = new byte[READ_LENGTH];
            for (int k = 0; k < 8; k++) {
                assertEquals(0, client.readReply().error());
                client.readFully(data);
            }
            return false;
        }
        catch (IOException e) {
            return true;
        }
    }

    private static FrontendConfig config(Map<String, String> options)
    {
        return NbdTestConfig.tcp(options);
    }

    private SocketAddress address()
    {
        String uri = server.uri();
        int port = Integer.parseInt(uri.substring(uri.lastIndexOf(':') + 1, uri.indexOf('/', "nbd://".length())));
        return new InetSocketAddress("127.0.0.1", port);
    }
}
