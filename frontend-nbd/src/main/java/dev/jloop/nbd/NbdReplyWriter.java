package dev.jloop.nbd;

import dev.jloop.api.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR_OFFSET;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_NONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.nbdError;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;
import static java.util.Objects.requireNonNull;

/**
 * Sends the replies of one connection, simple or structured, in the order they are queued (completion order). Completions
 * run on device threads that must never wait for a slow client, so {@link #queue} only links the
 * request into a list; this thread does the blocking socket write (header and page buffers in one
 * gathering write) and recycles the request afterwards.
 *
 * <p>After a failed write (the client went away) replies are dropped but requests are still
 * recycled, so pages and budget come back and the reader can finish.
 */
final class NbdReplyWriter
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(NbdReplyWriter.class);

    /** Most bytes given to one socket write: a client reading at least this much per reply-timeout-ms is not dropped. */
    static final int MAX_WRITE = 1 << 20;

    private final NbdChannel channel;
    private final NbdTransmission transmission;
    private final String peer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition queued = lock.newCondition();
    private NbdRequest head;
    private NbdRequest tail;
    private boolean stopping;
    private boolean broken;
    // For the server's reply watchdog: socket writes that moved bytes, and whether a reply is being
    // written (a client that stopped reading leaves busy set and progress still).
    private volatile long progress;
    private volatile boolean busy;

    NbdReplyWriter(NbdChannel channel, NbdTransmission transmission, String peer)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.transmission = requireNonNull(transmission, "transmission is null");
        this.peer = requireNonNull(peer, "peer is null");
    }

    /** Queues the reply of a completed request; never blocks on I/O. Any thread. */
    void queue(NbdRequest request)
    {
        request.next = null;
        lock.lock();
        try {
            if (tail == null) {
                head = request;
            }
            else {
                tail.next = request;
            }
            tail = request;
            queued.signal();
        }
        finally {
            lock.unlock();
        }
    }

    /** Lets the thread end once the queue is empty; the caller has made sure nothing more is queued. */
    void stop()
    {
        lock.lock();
        try {
            stopping = true;
            queued.signal();
        }
        finally {
            lock.unlock();
        }
    }

    /** Socket writes so far; read by the reply watchdog, which compares it between its rounds. */
    long progress()
    {
        return progress;
    }

    /** Whether a reply is being written or waits to be; false once sending has failed. */
    boolean busy()
    {
        return busy;
    }

    @Override
    public void run()
    {
        NbdRequest request;
        while ((request = take()) != null) {
            if (!broken) {
                try {
                    write(request);
                }
                catch (IOException e) {
                    broken = true;
                    busy = false;
                    log.debug("{}: cannot send replies, dropping them: {}", peer, e.toString());
                    try {
                        // The reader must stop too: nobody will see the replies of further requests.
                        channel.shutdownInput();
                    }
                    catch (IOException ignored) {
                        // already closed
                    }
                }
            }
            transmission.recycle(request);
        }
    }

    private NbdRequest take()
    {
        lock.lock();
        try {
            if (head == null) {
                busy = false;
            }
            while (head == null && !stopping) {
                queued.awaitUninterruptibly();
            }
            NbdRequest request = head;
            busy = request != null && !broken;
            if (request != null) {
                head = request.next;
                if (head == null) {
                    tail = null;
                }
                request.next = null;
            }
            return request;
        }
        finally {
            lock.unlock();
        }
    }

    private void write(NbdRequest request)
            throws IOException
    {
        if (request.structured) {
            writeStructured(request);
            return;
        }
        ByteBuffer header = request.replyHeader.clear()
                .putInt(SIMPLE_REPLY_MAGIC)
                .putInt(request.error)
                .putLong(request.cookie)
                .flip();
        if (request.type != CMD_READ || request.error != 0 || request.nrPages == 0) {
            writeFully(header);
            return;
        }
        request.preparePageBuffers();
        ByteBuffer[] gather = request.gather;
        gather[0] = header;
        for (int i = 0; i < request.nrPages; i++) {
            gather[i + 1] = request.pages[i].buffer();
        }
        writeGather(gather, request.nrPages + 1);
    }

    /**
     * The chunks of a structured READ or BLOCK_STATUS reply. READ: the chunk headers are written
     * into one buffer as they come; each data chunk goes out as one gathering write of the headers
     * not yet sent and the page buffers holding the chunk's bytes (positions and limits set for that
     * chunk, as two chunks may share a page). The last chunk carries NBD_REPLY_FLAG_DONE.
     */
    private void writeStructured(NbdRequest request)
            throws IOException
    {
        if (request.error != 0) {
            writeError(request, REPLY_TYPE_ERROR, request.error, 0);
            return;
        }
        if (request.type == CMD_BLOCK_STATUS) {
            writeFully(request.statusReply);
            return;
        }
        for (int k = 0; k < request.nrChunks; k++) {
            if (request.chunkError[k] != 0) {
                // The read failed in this chunk: one error chunk stands for the whole reply.
                writeError(request, REPLY_TYPE_ERROR_OFFSET, nbdError(request.chunkError[k]), request.offset + request.chunkOffset[k]);
                return;
            }
        }
        ByteBuffer headers = request.chunkHeaders().clear();
        if (request.nrChunks == 0) {
            // a zero-length READ
            chunkHeader(headers, request, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0);
            writeFully(headers.flip());
            return;
        }
        ByteBuffer[] gather = request.gather;
        int mark = 0;
        int page = 0;
        long pageStart = 0;
        for (int k = 0; k < request.nrChunks; k++) {
            int flags = k == request.nrChunks - 1 ? REPLY_FLAG_DONE : 0;
            long length = request.chunkLength[k];
            if (request.chunkHole[k]) {
                chunkHeader(headers, request, flags, REPLY_TYPE_OFFSET_HOLE, 12)
                        .putLong(request.offset + request.chunkOffset[k])
                        .putInt((int) length);
                continue;
            }
            chunkHeader(headers, request, flags, REPLY_TYPE_OFFSET_DATA, 8 + length)
                    .putLong(request.offset + request.chunkOffset[k]);
            int end = headers.position();
            headers.limit(end).position(mark);
            gather[0] = headers;
            int count = 1;
            long from = request.chunkOffset[k] - request.pageBase;
            long to = from + length;
            while (pageStart + request.pages[page].size() <= from) {
                pageStart += request.pages[page].size();
                page++;
            }
            long start = pageStart;
            for (int i = page; i < request.nrPages && start < to; i++) {
                int size = request.pages[i].size();
                ByteBuffer buffer = request.pages[i].buffer().clear();
                buffer.limit((int) Math.min(to - start, size)).position((int) Math.max(from - start, 0));
                gather[count++] = buffer;
                start += size;
            }
            writeGather(gather, count);
            mark = end;
            headers.limit(headers.capacity()).position(end);
        }
        if (headers.position() > mark) {
            headers.limit(headers.position()).position(mark);
            writeFully(headers);
        }
    }

    private void writeError(NbdRequest request, int type, int error, long offset)
            throws IOException
    {
        byte[] message = ("server error: " + Errno.name(error)).getBytes(StandardCharsets.US_ASCII);
        ByteBuffer chunk = request.chunkHeaders().clear();
        chunkHeader(chunk, request, REPLY_FLAG_DONE, type, 6 + message.length + (type == REPLY_TYPE_ERROR_OFFSET ? 8 : 0))
                .putInt(error)
                .putShort((short) message.length)
                .put(message);
        if (type == REPLY_TYPE_ERROR_OFFSET) {
            chunk.putLong(offset);
        }
        writeFully(chunk.flip());
    }

    private static ByteBuffer chunkHeader(ByteBuffer buffer, NbdRequest request, int flags, int type, long length)
    {
        return buffer.putInt(STRUCTURED_REPLY_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(request.cookie)
                .putInt((int) length);
    }

    private void writeFully(ByteBuffer buffer)
            throws IOException
    {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
            progress++;
        }
    }

    private void writeGather(ByteBuffer[] gather, int count)
            throws IOException
    {
        int first = 0;
        try {
            while (first < count) {
                writeSome(gather, first, count);
                while (first < count && !gather[first].hasRemaining()) {
                    first++;
                }
            }
        }
        finally {
            for (int i = 0; i < count; i++) {
                gather[i] = null;
            }
        }
    }

    /**
     * One socket write of at most {@link #MAX_WRITE} bytes from {@code buffers[first .. count)}. A
     * blocking write returns only once all it was given is sent, so without the cap a client that
     * reads a 32 MiB reply slowly would look to the reply watchdog like one that stopped reading.
     */
    private void writeSome(ByteBuffer[] buffers, int first, int count)
            throws IOException
    {
        long total = 0;
        int end = first;
        ByteBuffer cut = null;
        int limit = 0;
        while (end < count) {
            ByteBuffer buffer = buffers[end++];
            if (total + buffer.remaining() > MAX_WRITE) {
                cut = buffer;
                limit = buffer.limit();
                buffer.limit(buffer.position() + (int) (MAX_WRITE - total));
                break;
            }
            total += buffer.remaining();
        }
        try {
            channel.write(buffers, first, end - first);
        }
        finally {
            if (cut != null) {
                cut.limit(limit);
            }
        }
        progress++;
    }
}
