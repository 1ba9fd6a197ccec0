package dev.jloop.nbd.tls;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;
import javax.net.ssl.TrustManagerFactory;

import java.nio.ByteBuffer;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.util.Objects.requireNonNull;

/**
 * Runs records through a pair of engines in memory, once per JVM and in the background, so that the
 * JIT has compiled JSSE's record path with the AES and GHASH intrinsics before the first client
 * copies a disk. Without it a fresh JVM runs the first 80 MiB or so of a copy in interpreted or C1
 * code (C2 compiles the callers of the intrinsics after some 5000 records), and the first copy of
 * a GiB costs several times the CPU of the next (docs/benchmarks.md, "TLS"). About 0.6 s of CPU,
 * only where TLS is on; a client that connects at once shares the CPU with it (Linux ignores Java's
 * thread priorities unless told otherwise).
 */
final class TlsWarmUp
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(TlsWarmUp.class);
    private static final AtomicBoolean STARTED = new AtomicBoolean();

    // 48 MiB in records of the size that makes C2 compile the record path soonest for the CPU spent.
    private static final int RECORDS = 12_000;
    private static final int RECORD_BYTES = 4096;

    private final SSLContext context;
    private final String[] cipherSuites;
    private final X509Certificate certificate;

    TlsWarmUp(SSLContext context, String[] cipherSuites, X509Certificate certificate)
    {
        this.context = requireNonNull(context, "context is null");
        this.cipherSuites = requireNonNull(cipherSuites, "cipherSuites is null");
        this.certificate = requireNonNull(certificate, "certificate is null");
    }

    /** Starts the warm-up unless it ran in this JVM already. */
    static void startOnce(SSLContext context, String[] cipherSuites, X509Certificate certificate)
    {
        if (!STARTED.compareAndSet(false, true)) {
            return;
        }
        Thread thread = new Thread(new TlsWarmUp(context, cipherSuites, certificate), "jloop-tls-warm-up");
        thread.setDaemon(true);
        thread.setPriority(Thread.MIN_PRIORITY);
        thread.start();
    }

    @Override
    public void run()
    {
        long start = System.nanoTime();
        try {
            String suite = warmUp(RECORDS);
            log.debug("TLS warm-up done in {} ms ({})", (System.nanoTime() - start) / 1_000_000, suite);
        }
        catch (Exception | LinkageError e) {
            log.debug("TLS warm-up failed: {}", e.toString());
        }
    }

    /** Runs {@code records} records through on the calling thread; returns the cipher suite they used. */
    String warmUp(int records)
            throws Exception
    {
        SSLEngine server = JdkTlsEngines.serverEngine(context, cipherSuites, false);

        // The client trusts the server's own certificate: nothing here leaves the process.
        KeyStore trusted = KeyStore.getInstance("PKCS12");
        trusted.load(null, null);
        trusted.setCertificateEntry("server", certificate);
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(trusted);
        SSLContext clientContext = SSLContext.getInstance("TLS");
        clientContext.init(null, trust.getTrustManagers(), null);
        SSLEngine client = clientContext.createSSLEngine();
        client.setUseClientMode(true);
        // The suite clients will most likely get: the server's first of TLS 1.3.
        client.setEnabledProtocols(new String[] {"TLSv1.3"});
        client.setEnabledCipherSuites(Arrays.stream(cipherSuites).filter(suite -> !suite.contains("_WITH_")).limit(1).toArray(String[]::new));

        int packet = server.getSession().getPacketBufferSize();
        ByteBuffer toServer = ByteBuffer.allocate(packet * 4);
        ByteBuffer toClient = ByteBuffer.allocate(packet * 4);
        ByteBuffer plain = ByteBuffer.allocate(server.getSession().getApplicationBufferSize() * 4);
        handshake(client, server, toServer, toClient, plain);

        // As TlsNbdChannel uses them: pages are direct, records on the heap.
        ByteBuffer page = ByteBuffer.allocateDirect(RECORD_BYTES);
        ByteBuffer received = ByteBuffer.allocateDirect(server.getSession().getApplicationBufferSize());
        for (int i = 0; i < records; i++) {
            page.clear();
            toClient.clear();
            check(server.wrap(page, toClient));
            toClient.flip();
            received.clear();
            check(client.unwrap(toClient, received));
            if (received.position() != RECORD_BYTES) {
                throw new SSLException("a record of " + RECORD_BYTES + " bytes came out as " + received.position());
            }
        }
        return server.getSession().getCipherSuite();
    }

    private static void handshake(SSLEngine client, SSLEngine server, ByteBuffer toServer, ByteBuffer toClient, ByteBuffer plain)
            throws SSLException
    {
        ByteBuffer empty = ByteBuffer.allocate(0);
        client.beginHandshake();
        server.beginHandshake();
        for (int round = 0; round < 100; round++) {
            client.wrap(empty, toServer);
            runTasks(client);
            deliver(toServer, server, plain);
            server.wrap(empty, toClient);
            runTasks(server);
            deliver(toClient, client, plain);
            // TLS 1.3 servers send a session ticket after the handshake: the client must take it, or the record numbers part
            if (done(client) && done(server) && toServer.position() == 0 && toClient.position() == 0) {
                return;
            }
        }
        throw new SSLException("the handshake did not finish");
    }

    /** Unwraps every whole record in {@code records} (write mode) into {@code engine}. */
    private static void deliver(ByteBuffer records, SSLEngine engine, ByteBuffer plain)
            throws SSLException
    {
        records.flip();
        try {
            while (records.hasRemaining()) {
                plain.clear();
                SSLEngineResult result = engine.unwrap(records, plain);
                runTasks(engine);
                if (result.bytesConsumed() == 0) {
                    break;
                }
            }
        }
        finally {
            records.compact();
        }
    }

    private static boolean done(SSLEngine engine)
    {
        HandshakeStatus status = engine.getHandshakeStatus();
        return status == HandshakeStatus.NOT_HANDSHAKING || status == HandshakeStatus.FINISHED;
    }

    private static void check(SSLEngineResult result)
            throws SSLException
    {
        if (result.getStatus() != SSLEngineResult.Status.OK) {
            throw new SSLException("unexpected " + result);
        }
    }

    private static void runTasks(SSLEngine engine)
    {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }
}
