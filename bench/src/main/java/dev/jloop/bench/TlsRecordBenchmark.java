package dev.jloop.bench;

import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.netty.util.ReferenceCountUtil;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * TLS records of the two engines jloop serves TLS with ({@code --tls-engine}): the JDK's and
 * BoringSSL's (netty over netty-tcnative), on heap and direct buffers, TLS 1.3 with AES-128-GCM, a
 * 256 KiB READ reply per operation in full 16 KiB records. {@code wrap} is the server encrypting
 * it; {@code roundTrip} is a peer of the same engine encrypting it and the server decrypting it, so
 * unwrapping costs {@code roundTrip - wrap}. Throughput is 256 KiB over the time per operation. The
 * engines are in memory: no socket, as only the record work is measured. Needs openssl for the key.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class TlsRecordBenchmark
{
    private static final int REPLY = 256 << 10;

    @Param({"JDK", "OPENSSL"})
    public String engine;

    @Param({"heap", "direct"})
    public String buffers;

    private SSLEngine server;
    private SSLEngine peer;
    private ByteBuffer plain;
    private ByteBuffer records;
    private ByteBuffer received;

    @Setup
    public void setUp()
            throws Exception
    {
        Path dir = Files.createTempDirectory("jloop-tls-bench");
        File key = dir.resolve("key.pem").toFile();
        File cert = dir.resolve("cert.pem").toFile();
        Process openssl = new ProcessBuilder("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "1", "-subj", "/CN=localhost", "-keyout", key.toString(), "-out", cert.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (openssl.waitFor() != 0) {
            throw new IOException("openssl could not make a key");
        }
        SslProvider provider = SslProvider.valueOf(engine.equals("OPENSSL") ? "OPENSSL_REFCNT" : engine);
        SslContext serverContext = SslContextBuilder.forServer(cert, key).sslProvider(provider).protocols("TLSv1.3").build();
        SslContext peerContext = SslContextBuilder.forClient().sslProvider(provider).trustManager(cert).protocols("TLSv1.3")
                .ciphers(List.of("TLS_AES_128_GCM_SHA256")).build();
        server = serverContext.newEngine(UnpooledByteBufAllocator.DEFAULT);
        peer = peerContext.newEngine(UnpooledByteBufAllocator.DEFAULT, "localhost", 10809);
        handshake(peer, server);
        if (!server.getSession().getCipherSuite().equals("TLS_AES_128_GCM_SHA256")) {
            throw new IllegalStateException("negotiated " + server.getSession().getCipherSuite());
        }
        plain = allocate(REPLY);
        records = allocate(2 * REPLY);
        received = allocate(REPLY + (64 << 10));
    }

    @TearDown
    public void tearDown()
    {
        ReferenceCountUtil.release(server);
        ReferenceCountUtil.release(peer);
    }

    private ByteBuffer allocate(int size)
    {
        return buffers.equals("direct") ? ByteBuffer.allocateDirect(size) : ByteBuffer.allocate(size);
    }

    @Benchmark
    public int wrap()
            throws SSLException
    {
        return wrapReply(server);
    }

    @Benchmark
    public int roundTrip()
            throws SSLException
    {
        wrapReply(peer);
        records.flip();
        received.clear();
        while (records.hasRemaining()) {
            check(server.unwrap(records, received));
        }
        return received.position();
    }

    private int wrapReply(SSLEngine engine)
            throws SSLException
    {
        plain.clear();
        records.clear();
        while (plain.hasRemaining()) {
            check(engine.wrap(plain, records));
        }
        return records.position();
    }

    private static void check(SSLEngineResult result)
            throws SSLException
    {
        if (result.getStatus() != SSLEngineResult.Status.OK) {
            throw new SSLException("unexpected " + result);
        }
    }

    /** Runs a handshake between two engines in memory, and delivers what the server sends after it (session tickets). */
    private static void handshake(SSLEngine client, SSLEngine server)
            throws SSLException
    {
        ByteBuffer toServer = ByteBuffer.allocate(1 << 17);
        ByteBuffer toClient = ByteBuffer.allocate(1 << 17);
        ByteBuffer sink = ByteBuffer.allocate(1 << 17);
        client.beginHandshake();
        server.beginHandshake();
        for (int i = 0; i < 100; i++) {
            step(client, toServer, toClient, sink);
            step(server, toClient, toServer, sink);
            if (done(client) && done(server) && toServer.position() == 0 && toClient.position() == 0) {
                return;
            }
        }
        throw new SSLException("handshake did not finish: client " + client.getHandshakeStatus() + ", server " + server.getHandshakeStatus());
    }

    private static boolean done(SSLEngine engine)
    {
        HandshakeStatus status = engine.getHandshakeStatus();
        return status == HandshakeStatus.NOT_HANDSHAKING || status == HandshakeStatus.FINISHED;
    }

    /** Lets {@code engine} write what it must into {@code out} and take what it can from {@code in} (both in write mode). */
    private static void step(SSLEngine engine, ByteBuffer out, ByteBuffer in, ByteBuffer sink)
            throws SSLException
    {
        ByteBuffer empty = ByteBuffer.allocate(0);
        while (true) {
            HandshakeStatus status = engine.getHandshakeStatus();
            if (status == HandshakeStatus.NEED_TASK) {
                Runnable task;
                while ((task = engine.getDelegatedTask()) != null) {
                    task.run();
                }
            }
            else if (status == HandshakeStatus.NEED_WRAP) {
                check(engine.wrap(empty, out));
            }
            else {
                // NEED_UNWRAP, or done: take whatever the other side sent (tickets after the handshake)
                in.flip();
                // an unwrap with nothing to take still lets netty's engine see that its handshake finished
                SSLEngineResult result = in.hasRemaining() || status == HandshakeStatus.NEED_UNWRAP ? engine.unwrap(in, sink) : null;
                in.compact();
                sink.clear();
                if (result == null || result.getStatus() == SSLEngineResult.Status.BUFFER_UNDERFLOW
                        || (result.bytesConsumed() == 0 && result.getHandshakeStatus() == status)) {
                    return;
                }
                check(result);
            }
        }
    }
}
