package dev.jloop.dist;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;

import static java.util.Objects.requireNonNull;

/**
 * A raw NBD client that keeps hundreds of requests in flight on one connection: fixed newstyle with
 * NBD_OPT_GO and no structured replies, so that every reply is a simple one; a writer thread that sends
 * requests while fewer than {@code window} are unanswered, and a reader thread that matches each reply
 * to its request by handle.
 *
 * <p>It sits in dist's test sources next to {@link NbdStressIT}, its only user, rather than in testkit:
 * frontend-nbd's tests have their own client for single requests on the wire, and nothing else drives a
 * server hundreds of requests deep. The blocking {@link SocketChannel} is used with byte buffers only,
 * as the streams of {@code Channels} would serialize the reader and the writer on one lock.
 */
final class PipelinedNbdClient
        implements AutoCloseable
{
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_CACHE = 5;
    static final int CMD_WRITE_ZEROES = 6;

    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;
    static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    static final int FLAG_SEND_FLUSH = 1 << 2;
    static final int FLAG_SEND_FUA = 1 << 3;
    static final int FLAG_SEND_TRIM = 1 << 5;
    static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    static final int FLAG_SEND_CACHE = 1 << 10;
    static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    static final int NBD_EINVAL = 22;
    static final int NBD_ENOTSUP = 95;

    private static final long NBDMAGIC = 0x4e42444d41474943L;
    private static final long IHAVEOPT = 0x49484156454F5054L;
    private static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    private static final int REQUEST_MAGIC = 0x25609513;
    private static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    private static final int FLAG_FIXED_NEWSTYLE = 1;
    private static final int FLAG_NO_ZEROES = 1 << 1;
    private static final int OPT_GO = 7;
    private static final int REP_ACK = 1;
    private static final int REP_INFO = 3;
    private static final int INFO_EXPORT = 0;

    /** One request; {@code payload} is the data of a WRITE, else null. */
    record Request(long handle, int type, int flags, long offset, int length, byte[] payload)
    {
        @Override
        public String toString()
        {
            return "#" + handle + " " + command(type, flags) + " " + length + "@" + offset;
        }
    }

    /** Where the writer takes its requests: null when there are no more. May block. */
    interface RequestSource
    {
        Request next(PipelinedNbdClient client)
                throws InterruptedException;
    }

    /** Called on the reader thread with each reply, and with the data of a READ answered without error. */
    interface ReplyHandler
    {
        void reply(PipelinedNbdClient client, Request request, int error, byte[] data);
    }

    private final int id;
    private final SocketChannel channel;
    private final ByteBuffer in = ByteBuffer.allocate(1 << 16).flip();
    private final Semaphore window;
    private final ReplyHandler handler;
    private final Map<Long, Request> outstanding = new ConcurrentHashMap<>();
    private final AtomicInteger sent = new AtomicInteger();
    private final AtomicInteger answered = new AtomicInteger();
    private long exportSize;
    private int transmissionFlags;
    private Thread reader;
    private volatile Thread writer;
    private volatile Request writing;
    private volatile Phase phase;
    private volatile Exception failure;
    private volatile boolean closing;

    /** One {@link #send} call: done once its source is drained and every request it sent is answered. */
    private static final class Phase
    {
        // the writer holds one count until its source is drained; each request sent holds one until answered
        final AtomicInteger pending = new AtomicInteger(1);
        final CompletableFuture<Void> done = new CompletableFuture<>();

        void release()
        {
            if (pending.decrementAndGet() == 0) {
                done.complete(null);
            }
        }
    }

    private PipelinedNbdClient(int id, SocketChannel channel, int window, ReplyHandler handler)
    {
        this.id = id;
        this.channel = channel;
        this.window = new Semaphore(window);
        this.handler = handler;
    }

    /** Connects to the default export with NBD_OPT_GO and starts the reader thread. */
    static PipelinedNbdClient connect(SocketAddress address, int id, int window, ReplyHandler handler)
            throws IOException
    {
        requireNonNull(handler, "handler is null");
        PipelinedNbdClient client = new PipelinedNbdClient(id, SocketChannel.open(address), window, handler);
        try {
            client.handshake();
        }
        catch (IOException | RuntimeException e) {
            client.channel.close();
            throw e;
        }
        client.reader = new Thread(client::readReplies, "nbd-client-" + id + "-reader");
        client.reader.setDaemon(true);
        client.reader.start();
        return client;
    }

    int id()
    {
        return id;
    }

    long exportSize()
    {
        return exportSize;
    }

    int transmissionFlags()
    {
        return transmissionFlags;
    }

    int sent()
    {
        return sent.get();
    }

    int answered()
    {
        return answered.get();
    }

    /** Requests sent (or being sent) and not answered yet. */
    List<Request> outstanding()
    {
        List<Request> requests = new ArrayList<>(outstanding.values());
        requests.sort((a, b) -> Long.compare(a.handle(), b.handle()));
        return requests;
    }

    /** Why the connection failed (the server closed it early, a reply for no request, ...), or null. */
    Exception failure()
    {
        return failure;
    }

    /** The request the writer is blocked sending, if any: the server has stopped reading requests. */
    Request writing()
    {
        return writing;
    }

    /**
     * Sends what {@code source} gives on a new writer thread, at most {@code window} unanswered at a time.
     * The future completes when the source is drained and every request sent was answered, and
     * completes exceptionally when the connection fails.
     */
    CompletableFuture<Void> send(RequestSource source)
    {
        if (phase != null && !phase.done.isDone()) {
            throw new IllegalStateException("connection " + id + " is still sending");
        }
        if (failure != null) {
            return CompletableFuture.failedFuture(failure);
        }
        Phase current = new Phase();
        phase = current;
        Thread thread = new Thread(() -> writeRequests(source, current), "nbd-client-" + id + "-writer");
        thread.setDaemon(true);
        writer = thread;
        thread.start();
        return current.done;
    }

    /** Sends NBD_CMD_DISC: the server finishes what is in flight and closes the connection. */
    void disconnect()
            throws IOException
    {
        writeFully(header(CMD_DISC, 0, 0, 0, 0), null);
    }

    /** Closes the connection at once, without NBD_CMD_DISC, and waits for the reader and the writer to end. */
    @Override
    public void close()
            throws IOException
    {
        closing = true;
        channel.close();
        try {
            Thread thread = writer;
            if (thread != null) {
                thread.interrupt();
                thread.join(10_000);
            }
            if (reader != null) {
                reader.join(10_000);
            }
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static String command(int type, int flags)
    {
        StringBuilder name = new StringBuilder(switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            default -> "CMD_" + type;
        });
        if ((flags & CMD_FLAG_NO_HOLE) != 0) {
            name.append("+NO_HOLE");
        }
        if ((flags & CMD_FLAG_FAST_ZERO) != 0) {
            name.append("+FAST_ZERO");
        }
        if ((flags & CMD_FLAG_FUA) != 0) {
            name.append("+FUA");
        }
        return name.toString();
    }

    private void handshake()
            throws IOException
    {
        fill(18);
        long magic = in.getLong();
        long option = in.getLong();
        int serverFlags = Short.toUnsignedInt(in.getShort());
        if (magic != NBDMAGIC || option != IHAVEOPT || (serverFlags & FLAG_FIXED_NEWSTYLE) == 0) {
            throw new IOException(String.format("not a fixed newstyle NBD server: %x %x flags %x", magic, option, serverFlags));
        }
        // Export name "" and no information requests: NBD_INFO_EXPORT comes anyway, and no block size
        // constraints are agreed to, so requests of any alignment may be sent.
        ByteBuffer go = ByteBuffer.allocate(4 + 16 + 6)
                .putInt(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES))
                .putLong(IHAVEOPT).putInt(OPT_GO).putInt(6)
                .putInt(0).putShort((short) 0)
                .flip();
        writeFully(go, null);
        while (true) {
            fill(20);
            long replyMagic = in.getLong();
            int replyOption = in.getInt();
            int type = in.getInt();
            int length = in.getInt();
            if (replyMagic != OPTION_REPLY_MAGIC || replyOption != OPT_GO) {
                throw new IOException(String.format("bad option reply %x for option %d", replyMagic, replyOption));
            }
            byte[] data = new byte[length];
            readFully(data);
            if (type == REP_ACK) {
                return;
            }
            if (type != REP_INFO) {
                throw new IOException(String.format("NBD_OPT_GO refused with reply type 0x%x", type));
            }
            ByteBuffer info = ByteBuffer.wrap(data);
            if (info.getShort() == INFO_EXPORT) {
                exportSize = info.getLong();
                transmissionFlags = Short.toUnsignedInt(info.getShort());
            }
        }
    }

    private void writeRequests(RequestSource source, Phase current)
    {
        try {
            while (true) {
                window.acquire();
                Request request = source.next(this);
                if (request == null) {
                    window.release();
                    break;
                }
                // in the map before it is on the wire: the reply may beat the return of write()
                outstanding.put(request.handle(), request);
                current.pending.incrementAndGet();
                writing = request;
                writeFully(header(request.type(), request.flags(), request.handle(), request.offset(), request.length()),
                        request.payload() == null ? null : ByteBuffer.wrap(request.payload()));
                writing = null;
                sent.incrementAndGet();
            }
            current.release();
        }
        catch (InterruptedException e) {
            current.done.completeExceptionally(new IOException("connection " + id + ": writer interrupted"));
        }
        catch (IOException e) {
            writing = null;
            if (!closing) {
                fail(new IOException("connection " + id + ": sending failed: " + e, e));
            }
        }
    }

    private void readReplies()
    {
        try {
            while (true) {
                if (!fill(16)) {
                    if (!outstanding.isEmpty()) {
                        fail(new EOFException("connection " + id + ": the server closed the connection with "
                                + outstanding.size() + " requests unanswered"));
                    }
                    return;
                }
                int magic = in.getInt();
                int error = in.getInt();
                long handle = in.getLong();
                if (magic != SIMPLE_REPLY_MAGIC) {
                    throw new IOException(String.format("connection %d: bad reply magic 0x%08x", id, magic));
                }
                Request request = outstanding.get(handle);
                if (request == null) {
                    // the stream cannot be parsed on: a READ's data may follow
                    throw new IOException(String.format("connection %d: reply (error %d) for handle %d, which is not outstanding",
                            id, error, handle));
                }
                byte[] data = null;
                if (request.type() == CMD_READ && error == 0) {
                    data = new byte[request.length()];
                    readFully(data);
                }
                outstanding.remove(handle);
                answered.incrementAndGet();
                try {
                    handler.reply(this, request, error, data);
                }
                finally {
                    window.release();
                    phase.release();
                }
            }
        }
        catch (IOException | RuntimeException e) {
            if (!closing) {
                fail(e);
            }
        }
    }

    private void fail(Exception e)
    {
        if (failure == null) {
            failure = e;
        }
        Phase current = phase;
        if (current != null) {
            current.done.completeExceptionally(e);
        }
    }

    private static ByteBuffer header(int type, int flags, long handle, long offset, int length)
    {
        return ByteBuffer.allocate(28)
                .putInt(REQUEST_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(handle)
                .putLong(offset)
                .putInt(length)
                .flip();
    }

    private void writeFully(ByteBuffer header, ByteBuffer payload)
            throws IOException
    {
        ByteBuffer[] buffers = payload == null ? new ByteBuffer[] {header} : new ByteBuffer[] {header, payload};
        while (header.hasRemaining() || (payload != null && payload.hasRemaining())) {
            channel.write(buffers);
        }
    }

    /** Buffers at least {@code n} bytes; false at end of input before the first of them. */
    private boolean fill(int n)
            throws IOException
    {
        if (in.remaining() >= n) {
            return true;
        }
        in.compact();
        try {
            while (in.position() < n) {
                if (channel.read(in) < 0) {
                    if (in.position() == 0) {
                        return false;
                    }
                    throw new EOFException("connection " + id + ": end of input inside a reply");
                }
            }
        }
        finally {
            in.flip();
        }
        return true;
    }

    private void readFully(byte[] data)
            throws IOException
    {
        int buffered = Math.min(in.remaining(), data.length);
        in.get(data, 0, buffered);
        ByteBuffer rest = ByteBuffer.wrap(data, buffered, data.length - buffered);
        while (rest.hasRemaining()) {
            if (channel.read(rest) < 0) {
                throw new EOFException("connection " + id + ": end of input inside the data of a reply");
            }
        }
    }
}
