package dev.jloop.nbd;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** max-connections and the handshake timeout, with raw sockets. */
class TestNbdServerLimits
        extends AbstractNbdServerTest
{
    @Test
    void connectionsBeyondTheLimitAreClosedAtOnce()
            throws Exception
    {
        startServer(Map.of("max-connections", "2"));
        disk.write(0, new byte[] {1, 2, 3, 4});
        try (NbdTestClient first = NbdTestClient.open(address(), "disk");
                NbdTestClient second = NbdTestClient.open(address(), "disk")) {
            try (SocketChannel third = SocketChannel.open(address())) {
                // closed without a greeting
                assertEquals(-1, readWithTimeout(third, 18));
            }
            // the two admitted clients are still served
            assertArrayEquals(new byte[] {1, 2, 3, 4}, first.read(0, 4));
            assertArrayEquals(new byte[] {1, 2, 3, 4}, second.read(0, 4));
            second.sendRequest(0, NbdProtocol.CMD_DISC, 0, 0, 0);
        }
        // once the others have gone, a new client gets in (the server notices a closed connection soon after)
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (true) {
            try (NbdTestClient again = NbdTestClient.open(address(), "disk")) {
                assertArrayEquals(new byte[] {1, 2, 3, 4}, again.read(0, 4));
                break;
            }
            catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                Thread.sleep(50);
            }
        }
    }

    @Test
    void silentClientsAreDroppedAfterTheHandshakeTimeoutWhileOthersAreServed()
            throws Exception
    {
        startServer(Map.of("handshake-timeout", "500ms"));
        disk.write(4096, new byte[] {9, 8, 7});
        List<SocketChannel> silent = new ArrayList<>();
        try {
            for (int i = 0; i < 5; i++) {
                silent.add(SocketChannel.open(address()));
            }
            long start = System.nanoTime();
            try (NbdTestClient busy = NbdTestClient.open(address(), "disk")) {
                for (SocketChannel channel : silent) {
                    // the greeting, then end of input when the server gives up on the client
                    assertEquals(18, readWithTimeout(channel, 18));
                    assertEquals(-1, readWithTimeout(channel, 1));
                }
                long waitedMillis = (System.nanoTime() - start) / 1_000_000;
                assertTrue(waitedMillis >= 400, "dropped after " + waitedMillis + " ms, before the timeout");
                // past the timeout, a client that finished its handshake keeps being served
                Thread.sleep(600);
                assertArrayEquals(new byte[] {9, 8, 7}, busy.read(4096, 3));
            }
        }
        finally {
            for (SocketChannel channel : silent) {
                channel.close();
            }
        }
    }

    @Test
    void aClientStuckHalfWayThroughTheHandshakeIsDropped()
            throws Exception
    {
        startServer(Map.of("handshake-timeout", "300ms"));
        try (NbdTestClient client = new NbdTestClient(address())) {
            client.readGreeting();
            client.sendClientFlags(NbdProtocol.FLAG_C_FIXED_NEWSTYLE);
            // half an option header, then nothing
            client.sendRaw(new byte[] {0x49, 0x48, 0x41});
            long start = System.nanoTime();
            assertTrue(client.isClosedByServer());
            assertTrue(System.nanoTime() - start < 20_000_000_000L);
        }
    }

    @Test
    void badLimitsAreRefused()
    {
        assertThrows(IllegalArgumentException.class, () -> startServer(Map.of("max-connections", "-1")));
        assertThrows(IllegalArgumentException.class, () -> startServer(Map.of("handshake-timeout", "soon")));
    }

    /** Reads up to {@code length} bytes, waiting at most 10 s; -1 at end of input before any byte. */
    private static int readWithTimeout(SocketChannel channel, int length)
            throws IOException
    {
        channel.socket().setSoTimeout(10_000);
        ByteBuffer buffer = ByteBuffer.allocate(length);
        var in = channel.socket().getInputStream();
        int total = 0;
        while (total < length) {
            int n = in.read(buffer.array(), total, length - total);
            if (n < 0) {
                return total == 0 ? -1 : total;
            }
            total += n;
        }
        return total;
    }
}
