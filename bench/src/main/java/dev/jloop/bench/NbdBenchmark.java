package dev.jloop.bench;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Export;
import dev.jloop.api.FrontendConfig;
import dev.jloop.loop.LoopDevice;
import dev.jloop.nbd.NbdServer;
import dev.jloop.testkit.MemoryBackingFile;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.EOFException;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The NBD request/reply path of a running {@link NbdServer}: a client on a Unix socket sends READ or
 * WRITE requests, the server's reader parses them into pooled requests and bios, {@link LoopDevice}
 * and {@code AioKernel} run them against an in-memory {@link MemoryBackingFile}, and the reply goes
 * back through the same code as with a real backend. One request at a time, or 32 sent in one
 * write and their replies read back ({@link OperationsPerInvocation}, per request).
 *
 * <p>Run with {@code -prof gc}: JMH 1.37 counts the allocation of every thread of the JVM, the
 * server's reader and writer included, so {@code gc.alloc.rate.norm} is the heap allocated per NBD
 * request by client and server together (the client here allocates nothing). The design's target
 * is 0 B in steady state.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
@Fork(1)
public class NbdBenchmark
{
    private static final int BLOCK = 4096;
    private static final long SIZE = 64 << 20;
    private static final int BATCH = 32;
    private static final int REQUEST_MAGIC = 0x25609513;
    private static final int REPLY_MAGIC = 0x67446698;
    private static final int CMD_READ = 0;
    private static final int CMD_WRITE = 1;
    private static final int CMD_DISC = 2;

    private Path directory;
    private LoopDevice device;
    private NbdServer server;
    private SocketChannel client;
    private final ByteBuffer requests = ByteBuffer.allocateDirect(BATCH * (28 + BLOCK));
    private final ByteBuffer replies = ByteBuffer.allocateDirect(BATCH * (16 + BLOCK));
    private long offset;
    private long cookie;

    @Setup
    public void setUp()
            throws IOException
    {
        MemoryBackingFile file = new MemoryBackingFile(SIZE);
        // Written blocks, so that reads copy data instead of zero-filling holes.
        byte[] data = new byte[1 << 20];
        java.util.Arrays.fill(data, (byte) 0x5a);
        for (long at = 0; at < SIZE; at += data.length) {
            file.write(at, data);
        }
        device = new LoopDevice(file, new AioKernel(), "bench");
        directory = Files.createTempDirectory("jloop-nbd-bench");
        Path socket = directory.resolve("nbd.sock");
        server = NbdServer.start(FrontendConfig.of(Map.of("socket", socket.toString())), List.of(new Export("", "", device)));
        client = SocketChannel.open(StandardProtocolFamily.UNIX);
        client.connect(UnixDomainSocketAddress.of(socket));
        handshake();
    }

    @TearDown
    public void tearDown()
            throws IOException
    {
        requests.clear();
        putRequest(CMD_DISC, 0, 0);
        requests.flip();
        writeFully(requests);
        client.close();
        server.close();
        device.close();
        Files.deleteIfExists(directory.resolve("nbd.sock"));
        Files.deleteIfExists(directory);
    }

    @Benchmark
    public long read4k()
            throws IOException
    {
        return roundTrip(CMD_READ, 1);
    }

    @Benchmark
    public long write4k()
            throws IOException
    {
        return roundTrip(CMD_WRITE, 1);
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long read4kBatch32()
            throws IOException
    {
        return roundTrip(CMD_READ, BATCH);
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long write4kBatch32()
            throws IOException
    {
        return roundTrip(CMD_WRITE, BATCH);
    }

    private long roundTrip(int type, int count)
            throws IOException
    {
        requests.clear();
        for (int i = 0; i < count; i++) {
            putRequest(type, offset, BLOCK);
            if (type == CMD_WRITE) {
                // the payload: whatever the buffer holds
                requests.position(requests.position() + BLOCK);
            }
            offset = (offset + BLOCK) & (SIZE - 1);
        }
        requests.flip();
        writeFully(requests);
        int replySize = type == CMD_READ ? 16 + BLOCK : 16;
        replies.clear().limit(count * replySize);
        readFully(replies);
        long sum = 0;
        for (int i = 0; i < count; i++) {
            int at = i * replySize;
            if (replies.getInt(at) != REPLY_MAGIC || replies.getInt(at + 4) != 0) {
                throw new IllegalStateException("bad reply: magic 0x" + Integer.toHexString(replies.getInt(at)) + ", error " + replies.getInt(at + 4));
            }
            sum += replies.getLong(at + 8);
        }
        return sum;
    }

    private void putRequest(int type, long at, int length)
    {
        requests.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(cookie++).putLong(at).putInt(length);
    }

    /** Fixed newstyle, no zeroes, NBD_OPT_EXPORT_NAME with the default export. */
    private void handshake()
            throws IOException
    {
        ByteBuffer greeting = ByteBuffer.allocate(18);
        readFully(greeting);
        ByteBuffer option = ByteBuffer.allocate(4 + 16).putInt(3).putLong(0x49484156454F5054L).putInt(1).putInt(0).flip();
        writeFully(option);
        ByteBuffer info = ByteBuffer.allocate(10);
        readFully(info);
        if (info.getLong(0) != SIZE) {
            throw new IllegalStateException("export size " + info.getLong(0));
        }
    }

    private void writeFully(ByteBuffer buffer)
            throws IOException
    {
        while (buffer.hasRemaining()) {
            client.write(buffer);
        }
    }

    private void readFully(ByteBuffer buffer)
            throws IOException
    {
        while (buffer.hasRemaining()) {
            if (client.read(buffer) < 0) {
                throw new EOFException("server closed the connection");
            }
        }
    }
}
