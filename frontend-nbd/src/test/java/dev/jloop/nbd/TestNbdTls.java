package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.nbd.pem.PemFiles;
import dev.jloop.nbd.tls.NbdTls;
import dev.jloop.nbd.tls.TlsSettings;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSocket;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_DF;
import static dev.jloop.nbd.NbdProtocol.IHAVEOPT;
import static dev.jloop.nbd.NbdProtocol.NBDMAGIC;
import static dev.jloop.nbd.NbdProtocol.OPT_ABORT;
import static dev.jloop.nbd.NbdProtocol.OPT_EXPORT_NAME;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.OPT_INFO;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST;
import static dev.jloop.nbd.NbdProtocol.OPT_STARTTLS;
import static dev.jloop.nbd.NbdProtocol.OPT_STRUCTURED_REPLY;
import static dev.jloop.nbd.NbdProtocol.REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_INVALID;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_TLS_REQD;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNSUP;
import static dev.jloop.nbd.NbdProtocol.REP_INFO;
import static dev.jloop.nbd.NbdProtocol.REP_SERVER;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * NBD_OPT_STARTTLS and the TLS modes, with the JDK's own TLS client on the other end, and the server
 * on its default TLS engine (BoringSSL on Linux x86-64 and ARM64); {@link TestNbdTlsOnJdk} runs the
 * same on the JDK's.
 */
class TestNbdTls
        extends AbstractNbdServerTest
{
    @TempDir(factory = TargetTempDirFactory.class)
    static Path keys;

    private static TestKeys server;
    private static TestKeys client;

    @BeforeAll
    static void makeKeys()
            throws Exception
    {
        server = TestKeys.create(keys, "server", "RSA");
        client = TestKeys.create(keys, "client", "EC");
    }

    /** The {@code --tls-engine} the server runs on. */
    String engine()
    {
        return "auto";
    }

    /** The engine {@link #engine()} comes to here. */
    private String expectedEngine()
    {
        boolean boringSslPlatform = System.getProperty("os.name").equals("Linux") && List.of("amd64", "aarch64").contains(System.getProperty("os.arch"));
        return engine().equals("auto") ? (boringSslPlatform ? "boringssl" : "jdk") : engine();
    }

    private Map<String, String> tls(String mode)
    {
        Map<String, String> options = new HashMap<>();
        options.put("tls-engine", engine());
        options.put("tls", mode);
        options.put("tls-cert", server.certificate.toString());
        options.put("tls-key", server.pkcs8Key.toString());
        return options;
    }

    @Test
    void requireRefusesEverythingButStartTlsAndAbortUntilTlsIsUp()
            throws Exception
    {
        startServer(tls("require"));
        try (TlsClient nbd = TlsClient.connect(address())) {
            for (int option : List.of(OPT_LIST, OPT_INFO, OPT_GO, 99)) {
                byte[] data = option == OPT_LIST ? new byte[0] : NbdTestClient.infoRequest("disk");
                nbd.sendOption(option, data);
                OptionReply reply = nbd.readOptionReply();
                assertEquals(option, reply.option());
                assertEquals(REP_ERR_TLS_REQD, reply.type(), "option " + option);
            }
            nbd.sendOption(OPT_STARTTLS, new byte[] {1});
            assertEquals(REP_ERR_INVALID, nbd.readOptionReply().type(), "STARTTLS takes no data");

            nbd.startTls(clientContext(false), OPT_STARTTLS);
            assertEquals("TLSv1.3", nbd.protocol());

            nbd.sendOption(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_INVALID, nbd.readOptionReply().type(), "STARTTLS twice");

            nbd.sendOption(OPT_LIST, new byte[0]);
            OptionReply first = nbd.readOptionReply();
            assertEquals(REP_SERVER, first.type());
            assertEquals(REP_SERVER, nbd.readOptionReply().type());
            assertEquals(REP_ACK, nbd.readOptionReply().type());

            assertEquals(DISK_SIZE, nbd.go("disk"));
            roundTrips(nbd);
        }
    }

    @Test
    void requireClosesOnExportNameBeforeTls()
            throws Exception
    {
        startServer(tls("require"));
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            assertThrows(EOFException.class, nbd.in::readLong);
        }
    }

    @Test
    void abortWorksBeforeTls()
            throws Exception
    {
        startServer(tls("require"));
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.sendOption(OPT_ABORT, new byte[0]);
            assertEquals(REP_ACK, nbd.readOptionReply().type());
            assertThrows(EOFException.class, nbd.in::readLong);
        }
    }

    @Test
    void onServesClearTextAndTls()
            throws Exception
    {
        startServer(tls("on"));
        try (TlsClient plain = TlsClient.connect(address())) {
            assertEquals(DISK_SIZE, plain.go("disk"));
            roundTrips(plain);
        }
        try (TlsClient secure = TlsClient.connect(address())) {
            secure.startTls(clientContext(false), OPT_STARTTLS);
            assertEquals(DISK_SIZE, secure.go("disk"));
            roundTrips(secure);
        }
    }

    /** The spec: STARTTLS forgets what was negotiated in clear text. */
    @Test
    void startTlsForgetsStructuredReplies()
            throws Exception
    {
        startServer(tls("on"));
        try (TlsClient before = TlsClient.connect(address())) {
            before.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, before.readOptionReply().type());
            before.startTls(clientContext(false), OPT_STARTTLS);
            before.go("disk");
            assertEquals(0, before.transmissionFlags & FLAG_SEND_DF, "DF needs structured replies, which TLS reset");
        }
        try (TlsClient after = TlsClient.connect(address())) {
            after.startTls(clientContext(false), OPT_STARTTLS);
            after.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, after.readOptionReply().type());
            after.go("disk");
            assertEquals(FLAG_SEND_DF, after.transmissionFlags & FLAG_SEND_DF);
        }
    }

    @Test
    void offRefusesStartTls()
            throws Exception
    {
        startServer(Map.of());
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.sendOption(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, nbd.readOptionReply().type());
            assertEquals(DISK_SIZE, nbd.go("disk"));
        }
    }

    @Test
    void verifyPeerWantsAClientCertificateFromTheCa()
            throws Exception
    {
        Map<String, String> options = tls("require");
        options.put("tls-verify-peer", "true");
        options.put("tls-ca", client.certificate.toString());
        startServer(options);
        try (TlsClient anonymous = TlsClient.connect(address())) {
            assertThrows(IOException.class, () -> {
                anonymous.startTls(clientContext(false), OPT_STARTTLS);
                // TLS 1.3 reports a refused client certificate on the first read
                anonymous.go("disk");
            });
        }
        try (TlsClient known = TlsClient.connect(address())) {
            known.startTls(clientContext(true), OPT_STARTTLS);
            assertEquals(DISK_SIZE, known.go("disk"));
            roundTrips(known);
        }
    }

    /** Many requests in flight both ways at once: the reader and writer threads share one SSLEngine. */
    @Test
    void pipelinedRequestsOverTls()
            throws Exception
    {
        startServer(tls("require"));
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.startTls(clientContext(false), OPT_STARTTLS);
            nbd.go("disk");
            int requests = 64;
            int length = 96 << 10;
            byte[][] blocks = new byte[requests][];
            Random random = new Random(7);
            ExecutorService sender = Executors.newSingleThreadExecutor();
            try {
                Future<?> sent = sender.submit(() -> {
                    for (int i = 0; i < requests; i++) {
                        blocks[i] = new byte[length];
                        random.nextBytes(blocks[i]);
                        nbd.request(CMD_WRITE, i, (long) i * length, length, blocks[i]);
                    }
                    for (int i = 0; i < requests; i++) {
                        nbd.request(CMD_READ, 1000 + i, (long) i * length, length, null);
                    }
                    return null;
                });
                // writes and reads may be answered in any order, reads only after their writes were
                Map<Long, byte[]> reads = new HashMap<>();
                for (int i = 0; i < 2 * requests; i++) {
                    long cookie = nbd.replyCookie();
                    if (cookie >= 1000) {
                        reads.put(cookie - 1000, nbd.data(length));
                    }
                }
                sent.get(1, TimeUnit.MINUTES);
                for (int i = 0; i < requests; i++) {
                    assertArrayEquals(blocks[i], reads.get((long) i), "block " + i);
                    assertArrayEquals(blocks[i], disk.read((long) i * length, length), "disk block " + i);
                }
            }
            finally {
                sender.shutdownNow();
            }
            nbd.request(CMD_DISC, 0, 0, 0, null);
        }
    }

    /**
     * Requests of many TLS records each, in both protocol versions: a WRITE payload unwrapped straight
     * into its pages, except where a record straddles the end of a request, and a READ reply wrapped
     * into full records. The client lists AES-256-GCM first; the server's order wins.
     */
    @ParameterizedTest
    @ValueSource(strings = {"TLSv1.3", "TLSv1.2"})
    void largeRequestsOverEitherProtocol(String protocol)
            throws Exception
    {
        startServer(tls("require"));
        try (TlsClient nbd = TlsClient.connect(address())) {
            String[] suites = protocol.equals("TLSv1.3")
                    ? new String[] {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"}
                    : new String[] {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"};
            nbd.startTls(clientContext(false), OPT_STARTTLS, protocol, suites);
            assertEquals(protocol, nbd.protocol());
            assertEquals(expectedSuite(protocol, suites), nbd.cipherSuite());
            assertEquals(DISK_SIZE, nbd.go("disk"));

            Random random = new Random(11);
            // 3 MiB and a bit, at an offset inside a page; then lengths that end records at odd places
            int[] lengths = {(3 << 20) + 4321, 16384 - 28, 16384, 16385, 1, 65536 + 17};
            long offset = 1000;
            for (int i = 0; i < lengths.length; i++) {
                byte[] data = new byte[lengths[i]];
                random.nextBytes(data);
                nbd.request(CMD_WRITE, 10 + i, offset, data.length, data);
                assertEquals(10 + i, nbd.replyCookie());
                nbd.request(CMD_READ, 100 + i, offset, data.length, null);
                assertEquals(100 + i, nbd.replyCookie());
                assertArrayEquals(data, nbd.data(data.length), "read back, length " + data.length);
                assertArrayEquals(data, disk.read(offset, data.length), "on disk, length " + data.length);
                offset += data.length + 512;
            }
            nbd.request(CMD_DISC, 0, 0, 0, null);
        }
    }

    /**
     * A client that goes away in the middle of a TLS record, inside a WRITE payload: the connection
     * ends, its pages come back (checked after every test), and the server serves the next client.
     */
    @Test
    void clientVanishingMidRecord()
            throws Exception
    {
        startServer(tls("require"));
        TlsClient nbd = TlsClient.connect(address());
        nbd.startTls(clientContext(false), OPT_STARTTLS);
        nbd.go("disk");
        // the header and 200 KiB of a 1 MiB WRITE in whole records, then part of a record, and no close_notify
        nbd.request(CMD_WRITE, 1, 0, 1 << 20, null);
        nbd.out.write(new byte[200 << 10]);
        nbd.out.flush();
        OutputStream raw = nbd.socket.getOutputStream();
        raw.write(new byte[] {23, 3, 3, 0x40, 0x11});
        raw.write(new byte[8000]);
        raw.flush();
        nbd.socket.close();
        try (TlsClient next = TlsClient.connect(address())) {
            next.startTls(clientContext(false), OPT_STARTTLS);
            assertEquals(DISK_SIZE, next.go("disk"));
            roundTrips(next);
        }
    }

    /**
     * The JDK's TLS orders the suites itself (AES-128 first where it has AES intrinsics); BoringSSL
     * follows the client's order in TLS 1.3, and its own in TLS 1.2 (AES-128 first).
     */
    private String expectedSuite(String protocol, String[] suites)
    {
        if (expectedEngine().equals("jdk")) {
            return aesIntrinsics() ? suites[1] : suites[0];
        }
        return protocol.equals("TLSv1.3") ? suites[0] : suites[1];
    }

    @Test
    void servesOnTheEngineAskedFor()
    {
        TlsSettings settings = new TlsSettings(NbdTls.Mode.REQUIRE, server.certificate, server.pkcs8Key, null,
                NbdTls.Engine.valueOf(engine().toUpperCase(java.util.Locale.ROOT)));
        assertEquals(expectedEngine(), NbdTls.load(settings).engine());
    }

    /** Over TCP a TLS connection's socket holds at most {@link NbdOptionChannel#TLS_UNSENT_LIMIT} unsent. */
    @Test
    void tlsConnectionsHoldLittleUnsent()
            throws Exception
    {
        startServer(tls("require"));
        int before = TestNbdUringLoop.socketsWithUnsentLimit(NbdOptionChannel.TLS_UNSENT_LIMIT);
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.startTls(clientContext(false), OPT_STARTTLS);
            assertEquals(DISK_SIZE, nbd.go("disk"));
            assertEquals(before + 1, TestNbdUringLoop.socketsWithUnsentLimit(NbdOptionChannel.TLS_UNSENT_LIMIT),
                    "the TLS connection's socket does not carry TCP_NOTSENT_LOWAT");
        }
    }

    private static boolean aesIntrinsics()
    {
        return Boolean.parseBoolean(ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class)
                .getVMOption("UseAES").getValue());
    }

    @Test
    void badCredentialsAreRefusedAtStart()
            throws Exception
    {
        Map<String, String> wrongKey = tls("on");
        wrongKey.put("tls-key", client.pkcs8Key.toString());
        IllegalArgumentException mismatch = assertThrows(IllegalArgumentException.class, () -> startServer(wrongKey));
        assertTrue(mismatch.getMessage().contains("does not belong to the certificate"), mismatch.getMessage());

        Map<String, String> noKey = new HashMap<>(Map.of("tls", "require", "tls-cert", server.certificate.toString()));
        assertThrows(IllegalArgumentException.class, () -> startServer(noKey));

        Map<String, String> offWithCertificates = tls("off");
        IllegalArgumentException off = assertThrows(IllegalArgumentException.class, () -> startServer(offWithCertificates));
        assertTrue(off.getMessage().contains("--tls is off"), off.getMessage());

        Map<String, String> badMode = tls("sometimes");
        assertThrows(IllegalArgumentException.class, () -> startServer(badMode));

        // a CA nobody would check client certificates against
        Map<String, String> caWithoutVerification = tls("require");
        caWithoutVerification.put("tls-ca", client.certificate.toString());
        IllegalArgumentException unused = assertThrows(IllegalArgumentException.class, () -> startServer(caWithoutVerification));
        assertTrue(unused.getMessage().contains("add --tls-verify-peer"), unused.getMessage());
    }

    @Test
    void pkcs1RsaKeysWork()
            throws Exception
    {
        Path pkcs1 = keys.resolve("server-key-pkcs1.pem");
        Files.writeString(pkcs1, "Some text certtool writes before the key\n" + server.traditionalPem());
        assertTrue(Files.readString(pkcs1).contains("BEGIN RSA PRIVATE KEY"));
        assertEquals(server.key, PemFiles.privateKey(Files.readAllBytes(pkcs1)));
        Map<String, String> options = tls("require");
        options.put("tls-key", pkcs1.toString());
        startServer(options);
        try (TlsClient nbd = TlsClient.connect(address())) {
            nbd.startTls(clientContext(false), OPT_STARTTLS);
            assertEquals(DISK_SIZE, nbd.go("disk"));
        }
    }

    @Test
    void ecKeysInPkcs8Work()
            throws Exception
    {
        assertEquals(client.key, PemFiles.privateKey(Files.readAllBytes(client.pkcs8Key)));
        // The JDK's SEC1 carries no curve; openssl's and certtool's always do (tested with them in dist).
        IOException noCurve = assertThrows(IOException.class, () -> PemFiles.privateKey(client.traditionalPem().getBytes(StandardCharsets.US_ASCII)));
        assertTrue(noCurve.getMessage().contains("curve"), noCurve.getMessage());
        IOException encrypted = assertThrows(IOException.class,
                () -> PemFiles.privateKey(TestKeys.pem("ENCRYPTED PRIVATE KEY", new byte[16]).getBytes(StandardCharsets.US_ASCII)));
        assertTrue(encrypted.getMessage().contains("encrypted"), encrypted.getMessage());
    }

    private void roundTrips(TlsClient nbd)
            throws IOException
    {
        byte[] data = new byte[300_000];
        new Random(3).nextBytes(data);
        nbd.request(CMD_WRITE, 1, 4096, data.length, data);
        assertEquals(1, nbd.replyCookie());
        nbd.request(CMD_READ, 2, 4096, data.length, null);
        assertEquals(2, nbd.replyCookie());
        assertArrayEquals(data, nbd.data(data.length));
        assertArrayEquals(data, disk.read(4096, data.length));
    }

    private SSLContext clientContext(boolean withCertificate)
            throws Exception
    {
        KeyManagerFactory keyManagers = null;
        if (withCertificate) {
            keyManagers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keyManagers.init(client.keyStore, client.password());
        }
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keyManagers == null ? null : keyManagers.getKeyManagers(), server.trustManagers(), null);
        return context;
    }

    record OptionReply(int option, int type, byte[] data) {}

    /** A client that speaks the handshake in clear text, then switches its streams to TLS. */
    static final class TlsClient
            implements AutoCloseable
    {
        final Socket socket;
        private SSLSocket tls;
        DataInputStream in;
        DataOutputStream out;
        int transmissionFlags;

        private TlsClient(Socket socket)
                throws IOException
        {
            this.socket = socket;
            this.in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
            this.out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
        }

        static TlsClient connect(java.net.SocketAddress address)
                throws IOException
        {
            Socket socket = new Socket();
            socket.connect(address, 10_000);
            socket.setSoTimeout(30_000);
            TlsClient client = new TlsClient(socket);
            assertEquals(NBDMAGIC, client.in.readLong());
            assertEquals(IHAVEOPT, client.in.readLong());
            client.in.readUnsignedShort();
            client.out.writeInt(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            client.out.flush();
            return client;
        }

        void startTls(SSLContext context, int option)
                throws IOException
        {
            startTls(context, option, null, null);
        }

        /** With {@code protocol} and {@code suites} (in the client's order of preference) when not null. */
        void startTls(SSLContext context, int option, String protocol, String[] suites)
                throws IOException
        {
            sendOption(option, new byte[0]);
            OptionReply reply = readOptionReply();
            assertEquals(REP_ACK, reply.type(), "STARTTLS refused");
            InetSocketAddress peer = (InetSocketAddress) socket.getRemoteSocketAddress();
            tls = (SSLSocket) context.getSocketFactory().createSocket(socket, "localhost", peer.getPort(), true);
            tls.setUseClientMode(true);
            if (protocol != null) {
                tls.setEnabledProtocols(new String[] {protocol});
            }
            if (suites != null) {
                tls.setEnabledCipherSuites(suites);
            }
            tls.startHandshake();
            in = new DataInputStream(new BufferedInputStream(tls.getInputStream()));
            out = new DataOutputStream(new BufferedOutputStream(tls.getOutputStream(), 1 << 16));
        }

        String protocol()
        {
            return tls.getSession().getProtocol();
        }

        String cipherSuite()
        {
            return tls.getSession().getCipherSuite();
        }

        synchronized void sendOption(int option, byte[] data)
                throws IOException
        {
            out.writeLong(IHAVEOPT);
            out.writeInt(option);
            out.writeInt(data.length);
            out.write(data);
            out.flush();
        }

        OptionReply readOptionReply()
                throws IOException
        {
            assertEquals(REPLY_MAGIC, in.readLong());
            int option = in.readInt();
            int type = in.readInt();
            byte[] data = new byte[in.readInt()];
            in.readFully(data);
            return new OptionReply(option, type, data);
        }

        /** NBD_OPT_GO; returns the export's size. */
        long go(String export)
                throws IOException
        {
            sendOption(OPT_GO, NbdTestClient.infoRequest(export));
            long size = -1;
            while (true) {
                OptionReply reply = readOptionReply();
                if (reply.type() == REP_ACK) {
                    return size;
                }
                if (reply.type() != REP_INFO) {
                    throw new SSLException("NBD_OPT_GO failed: " + Integer.toHexString(reply.type()));
                }
                ByteBuffer data = ByteBuffer.wrap(reply.data());
                if (data.getShort() == NbdProtocol.INFO_EXPORT) {
                    size = data.getLong();
                    transmissionFlags = Short.toUnsignedInt(data.getShort());
                }
            }
        }

        synchronized void request(int type, long cookie, long offset, int length, byte[] payload)
                throws IOException
        {
            out.writeInt(REQUEST_MAGIC);
            out.writeShort(0);
            out.writeShort(type);
            out.writeLong(cookie);
            out.writeLong(offset);
            out.writeInt(length);
            if (payload != null) {
                out.write(payload);
            }
            out.flush();
        }

        /** Reads a simple reply header, checks it succeeded, returns its cookie. */
        long replyCookie()
                throws IOException
        {
            assertEquals(SIMPLE_REPLY_MAGIC, in.readInt());
            assertEquals(0, in.readInt(), "NBD error");
            return in.readLong();
        }

        byte[] data(int length)
                throws IOException
        {
            byte[] data = new byte[length];
            in.readFully(data);
            return data;
        }

        @Override
        public void close()
                throws IOException
        {
            if (tls != null) {
                tls.close();
            }
            socket.close();
        }
    }
}
