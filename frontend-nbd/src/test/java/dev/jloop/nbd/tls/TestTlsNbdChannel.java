package dev.jloop.nbd.tls;

import dev.jloop.nbd.TestKeys;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link TlsNbdChannel} on each engine, against a client {@link SSLEngine} that sees every record:
 * short buffers gathered into whole records, and the engine freed once, after the last reader, when
 * another thread closes the channel under it.
 */
class TestTlsNbdChannel
{
    private static final byte[] HELLO = {'N', 'B', 'D', '!'};

    @TempDir(factory = TargetTempDirFactory.class)
    Path keys;

    private final ExecutorService threads = Executors.newCachedThreadPool();

    /**
     * A reply header, a payload, another header and a shorter payload in one gathering write, twice:
     * the second time in whole records of the most the engine puts in one, the last record alone
     * short, where one record per buffer (as BoringSSL's engine wraps) would leave short records in
     * the middle. The JDK's engine puts 17 bytes less than 16 KiB in a record on TLS 1.3, which the
     * first write teaches the channel.
     */
    @ParameterizedTest
    @ValueSource(strings = {"jdk", "boringssl"})
    void shortBuffersAreGatheredIntoWholeRecords(String engine)
            throws Exception
    {
        try (Pair pair = connect(engine)) {
            byte[][] parts = {random(20, 1), random(100_000, 2), random(20, 3), random(5000, 4)};
            int total = 0;
            for (byte[] part : parts) {
                total += part.length;
            }
            List<Integer> first = sendAndReceive(pair, parts, total);
            int record = first.stream().mapToInt(Integer::intValue).max().orElseThrow();
            assertTrue(record <= TlsNbdChannel.MAX_RECORD_PLAIN_TEXT && record > TlsNbdChannel.MAX_RECORD_PLAIN_TEXT - 64, "records of " + first);

            List<Integer> second = sendAndReceive(pair, parts, total);
            assertEquals((total + record - 1) / record, second.size(), "records " + second);
            for (int i = 0; i < second.size() - 1; i++) {
                assertEquals(record, second.get(i), "a short record in the middle: " + second);
            }
        }
    }

    /** Writes the parts in one gathering write and returns the plain text sizes of the records they came in, checking the bytes. */
    private static List<Integer> sendAndReceive(Pair pair, byte[][] parts, int total)
            throws IOException
    {
        ByteBuffer[] buffers = new ByteBuffer[parts.length];
        for (int i = 0; i < parts.length; i++) {
            buffers[i] = ByteBuffer.allocateDirect(parts[i].length).put(parts[i]).flip();
        }
        assertEquals(total, pair.server.write(buffers, 0, buffers.length));
        // room for a whole record past the end: the JDK's unwrap asks for it before it knows the record's length
        ByteBuffer received = ByteBuffer.allocate(total + (1 << 15));
        List<Integer> records = new ArrayList<>();
        while (received.position() < total) {
            int produced = pair.client.receiveRecord(received);
            if (produced > 0) {
                records.add(produced);
            }
        }
        assertEquals(total, received.position(), "bytes received");
        received.flip();
        for (byte[] part : parts) {
            byte[] got = new byte[part.length];
            received.get(got);
            assertArrayEquals(part, got);
        }
        return records;
    }

    @ParameterizedTest
    @ValueSource(strings = {"jdk", "boringssl"})
    void closeUnderABlockedReaderFreesTheEngineOnceAfterIt(String engine)
            throws Exception
    {
        try (Pair pair = connect(engine)) {
            Future<Integer> read = threads.submit(() -> {
                try {
                    return pair.server.read(ByteBuffer.allocate(4096));
                }
                catch (IOException e) {
                    return -2;
                }
            });
            Thread.sleep(200);
            assertEquals(0, pair.released.get(), "freed before anyone closed");
            pair.server.close();
            int result = read.get(10, TimeUnit.SECONDS);
            assertTrue(result < 0, "the blocked read returned " + result);
            assertEquals(1, pair.released.get());
            assertThrows(ClosedChannelException.class, () -> pair.server.read(ByteBuffer.allocate(16)));
            assertThrows(ClosedChannelException.class, () -> pair.server.write(ByteBuffer.allocate(16)));
            pair.server.close();
            assertEquals(1, pair.released.get(), "freed twice");
        }
    }

    private static byte[] random(int length, long seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).nextBytes(bytes);
        return bytes;
    }

    private Pair connect(String engine)
            throws Exception
    {
        TestKeys server = TestKeys.create(keys, "server-" + engine, "EC");
        TlsEngines engines = engine.equals("jdk")
                ? JdkTlsEngines.create(server.key, List.of(server.x509), null)
                : BoringSslEngines.create(server.key, List.of(server.x509), null);
        AtomicInteger released = new AtomicInteger();
        TlsEngines counting = new TlsEngines()
        {
            @Override
            public String name()
            {
                return engines.name();
            }

            @Override
            public SSLEngine newEngine()
            {
                return engines.newEngine();
            }

            @Override
            public boolean directBuffers()
            {
                return engines.directBuffers();
            }

            @Override
            public void release(SSLEngine sslEngine)
            {
                released.incrementAndGet();
                engines.release(sslEngine);
            }
        };
        try (ServerSocketChannel listener = ServerSocketChannel.open()) {
            listener.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            SocketChannel clientSocket = SocketChannel.open(listener.getLocalAddress());
            SocketChannel serverSocket = listener.accept();
            Client client = new Client(clientSocket, clientEngine(server));
            Future<TlsNbdChannel> serverHandshake = threads.submit(() -> TlsNbdChannel.handshake(NbdChannel.of(serverSocket), counting));
            try {
                client.handshake();
                // the server's handshake ends with the client's Finished, before the client says anything more
                TlsNbdChannel channel = serverHandshake.get(30, TimeUnit.SECONDS);
                client.send(HELLO);
                ByteBuffer hello = ByteBuffer.allocate(HELLO.length);
                while (hello.hasRemaining()) {
                    assertTrue(channel.read(hello) > 0, "end of input before the client's first bytes");
                }
                assertArrayEquals(HELLO, hello.array());
                return new Pair(channel, client, released);
            }
            catch (Exception e) {
                // neither side may wait for the other for ever
                clientSocket.close();
                serverSocket.close();
                throw e;
            }
        }
    }

    private static SSLEngine clientEngine(TestKeys server)
            throws Exception
    {
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, server.trustManagers(), null);
        SSLEngine engine = context.createSSLEngine("localhost", 10809);
        engine.setUseClientMode(true);
        return engine;
    }

    private final class Pair
            implements AutoCloseable
    {
        final TlsNbdChannel server;
        final Client client;
        final AtomicInteger released;

        Pair(TlsNbdChannel server, Client client, AtomicInteger released)
        {
            this.server = server;
            this.client = client;
            this.released = released;
        }

        @Override
        public void close()
                throws IOException
        {
            server.close();
            client.socket.close();
            threads.shutdownNow();
        }
    }

    /** A blocking TLS client on a plain socket, record by record. */
    private static final class Client
    {
        final SocketChannel socket;
        final SSLEngine engine;
        final ByteBuffer netIn = ByteBuffer.allocate(1 << 17);
        final ByteBuffer netOut = ByteBuffer.allocate(1 << 17);

        Client(SocketChannel socket, SSLEngine engine)
        {
            this.socket = socket;
            this.engine = engine;
        }

        void handshake()
                throws IOException
        {
            engine.beginHandshake();
            ByteBuffer sink = ByteBuffer.allocate(1 << 16);
            while (true) {
                HandshakeStatus status = engine.getHandshakeStatus();
                if (status == HandshakeStatus.NEED_TASK) {
                    Runnable task;
                    while ((task = engine.getDelegatedTask()) != null) {
                        task.run();
                    }
                }
                else if (status == HandshakeStatus.NEED_WRAP) {
                    wrapAndWrite(ByteBuffer.allocate(0));
                }
                else if (status == HandshakeStatus.NEED_UNWRAP) {
                    receiveRecord(sink);
                }
                else {
                    return;
                }
            }
        }

        void send(byte[] bytes)
                throws IOException
        {
            SSLEngineResult result = wrapAndWrite(ByteBuffer.wrap(bytes));
            if (result.getStatus() != SSLEngineResult.Status.OK || result.bytesConsumed() != bytes.length) {
                throw new IOException("wrap: " + result);
            }
        }

        /** Wraps what the engine takes of {@code plain} (or a handshake message) and writes it out. */
        private SSLEngineResult wrapAndWrite(ByteBuffer plain)
                throws IOException
        {
            netOut.clear();
            SSLEngineResult result = engine.wrap(plain, netOut);
            netOut.flip();
            while (netOut.hasRemaining()) {
                socket.write(netOut);
            }
            return result;
        }

        /** Unwraps the next record into {@code into}; returns the application bytes it carried (0 for a handshake message or a session ticket). */
        int receiveRecord(ByteBuffer into)
                throws IOException
        {
            while (true) {
                netIn.flip();
                SSLEngineResult result = engine.unwrap(netIn, into);
                netIn.compact();
                switch (result.getStatus()) {
                    case OK:
                        return result.bytesProduced();
                    case BUFFER_UNDERFLOW:
                        if (socket.read(netIn) < 0) {
                            throw new IOException("server closed");
                        }
                        break;
                    default:
                        throw new IOException("unwrap: " + result);
                }
            }
        }
    }
}
