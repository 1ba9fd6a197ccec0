package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.api.BioEndIo;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.IovIter;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION_ID;
import static dev.jloop.nbd.NbdProtocol.CHUNK_HEADER_SIZE;
import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_REQ_ONE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.NBD_EINVAL;
import static dev.jloop.nbd.NbdProtocol.NBD_EIO;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOMEM;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOSPC;
import static dev.jloop.nbd.NbdProtocol.NBD_EPERM;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REQUEST_SIZE;
import static dev.jloop.nbd.NbdProtocol.STATE_HOLE;
import static dev.jloop.nbd.NbdProtocol.STATE_ZERO;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static java.util.Objects.requireNonNull;

/**
 * The transmission phase of one connection: the reader side (this thread) parses requests, turns
 * them into bios and submits them, without waiting for earlier ones; replies go out through the
 * {@link NbdReplyWriter} in completion order. Replies made inside the reader's own work (refusals,
 * BLOCK_STATUS, requests that complete inside its submission: page-cache hits, backends that answer
 * at once) are collected and, at the reader's next unplug, sent by the reader itself in one gathering
 * write when they are few (no thread hand-off), or handed to the writer in one go when they are many
 * (written while the reader parses on). Simple and structured replies take either way alike.
 *
 * <p>Structured replies, once negotiated, answer READ and BLOCK_STATUS (other commands keep simple
 * replies, as the spec allows). A READ is planned from the device's extents and read in chunks by
 * its {@link StructuredRead}. BLOCK_STATUS ({@code base:allocation}) is answered from the device's extents
 * on this thread, at most {@link NbdRequest#MAX_EXTENTS} extents (one with REQ_ONE).
 *
 * <p>The reader holds the device's plug while it works through requests already in its input
 * buffer, and drops it before anything that may block (a socket read, waiting for budget or pages),
 * so a batch is submitted together but nothing waits behind a plug.
 *
 * <p>Bounds: the connection's {@link NbdRequestPool} (requests and payload bytes in flight).
 *
 * <p>Bad requests are answered with an error and the connection goes on: the payload of a refused
 * WRITE (out of range, read-only export, larger than {@link #MAX_REQUEST_LENGTH}) is read into the
 * input buffer and dropped, never allocated. Only a bad request magic ends the connection, as the
 * stream can no longer be parsed.
 */
final class NbdTransmission
        implements BioEndIo
{
    private static final Logger log = LoggerFactory.getLogger(NbdTransmission.class);

    /** Largest READ or WRITE served: twice the 32 MiB advertised, as nbdkit and qemu accept. */
    static final int MAX_REQUEST_LENGTH = 64 << 20;
    private static final int INPUT_BUFFER_SIZE = 64 << 10;
    /**
     * Replies the reader sends itself at most: a larger burst goes to the writer thread in one hand-off,
     * so that it is written while the reader parses the next requests.
     */
    private static final int DIRECT_REPLIES = 4;

    private final NbdChannel channel;
    private final BlockDevice device;
    private final int transmissionFlags;
    private final boolean structuredReplies;
    private final boolean baseAllocation;
    private final StatusCollector statusCollector = new StatusCollector();
    private final String peer;
    private final NbdRequestPool pool;
    private final NbdReplyWriter writer;
    private final ByteBuffer in = ByteBuffer.allocateDirect(INPUT_BUFFER_SIZE).flip();

    private boolean plugged;
    private Thread reader;
    /** Replies of requests that completed in the reader thread itself, sent when it unplugs. Reader only. */
    private NbdRequest completedHead;
    private NbdRequest completedTail;
    private int completedCount;

    NbdTransmission(
            NbdChannel channel,
            BlockDevice device,
            int transmissionFlags,
            boolean structuredReplies,
            boolean baseAllocation,
            PagePool pagePool,
            int maxInflightBytes,
            int maxInflightRequests,
            String peer)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.device = requireNonNull(device, "device is null");
        this.transmissionFlags = transmissionFlags;
        this.structuredReplies = structuredReplies;
        this.baseAllocation = baseAllocation && structuredReplies;
        this.peer = requireNonNull(peer, "peer is null");
        this.pool = new NbdRequestPool(pagePool, maxInflightBytes, maxInflightRequests);
        this.writer = new NbdReplyWriter(channel, pool, peer);
    }

    NbdReplyWriter writer()
    {
        return writer;
    }

    /**
     * Serves requests until NBD_CMD_DISC, end of input or an error, then waits until every request in
     * flight has completed and its reply was written (or dropped) before returning.
     */
    void run(String threadName)
            throws IOException
    {
        reader = Thread.currentThread();
        Thread writerThread = new Thread(writer, threadName + "-writer");
        writerThread.setDaemon(true);
        writerThread.start();
        try {
            serve();
        }
        finally {
            unplug();
            pool.awaitAllReturned();
            writer.stop();
            joinUninterruptibly(writerThread);
        }
    }

    private void serve()
            throws IOException
    {
        while (true) {
            if (!ensureBuffered(REQUEST_SIZE, true)) {
                log.debug("{}: end of input without NBD_CMD_DISC", peer);
                return;
            }
            if (!plugged) {
                device.plug();
                plugged = true;
            }
            int magic = in.getInt();
            int flags = Short.toUnsignedInt(in.getShort());
            int type = Short.toUnsignedInt(in.getShort());
            long cookie = in.getLong();
            long offset = in.getLong();
            long length = Integer.toUnsignedLong(in.getInt());
            if (magic != REQUEST_MAGIC) {
                throw new NbdProtocolException(String.format("bad request magic 0x%08x", magic));
            }
            if (type == CMD_DISC) {
                log.debug("{}: NBD_CMD_DISC", peer);
                return;
            }

            NbdRequest request = acquireRequest();
            request.reset(cookie, type, length);
            try {
                start(request, flags, offset);
            }
            catch (IOException | RuntimeException e) {
                // Never submitted nor queued: it is still ours to give back.
                pool.recycle(request);
                throw e;
            }
        }
    }

    /** Hands the request to the device, or answers it at once. */
    private void start(NbdRequest request, int flags, long offset)
            throws IOException
    {
        int type = request.type;
        long length = request.length;
        request.offset = offset;
        request.structured = structuredReplies && (type == CMD_READ || type == CMD_BLOCK_STATUS);
        int error = validate(flags, type, offset, length);
        if (error != 0) {
            log.debug("{}: {} offset={} length={} flags=0x{} refused with NBD error {}",
                    peer, NbdProtocol.commandName(type), offset, length, Integer.toHexString(flags), error);
            if (type == CMD_WRITE) {
                skip(length);
            }
            request.error = error;
            reply(request);
            return;
        }
        if (type == CMD_BLOCK_STATUS) {
            blockStatus(request, flags);
            reply(request);
            return;
        }
        if (length == 0 && type != CMD_FLUSH) {
            // Nothing to do, and a zero-length bio is not something devices need to handle.
            reply(request);
            return;
        }
        if (type == CMD_READ && structuredReplies) {
            startStructuredRead(request, (flags & CMD_FLAG_DF) != 0);
            return;
        }
        switch (type) {
            case CMD_READ:
            case CMD_WRITE:
                if (!allocatePages(request, length)) {
                    if (type == CMD_WRITE) {
                        skip(length);
                    }
                    request.error = NBD_ENOMEM;
                    reply(request);
                    return;
                }
                if (type == CMD_WRITE) {
                    readPayload(request);
                    request.clearPageBuffers();
                    request.iter.reset(IovIter.Direction.SOURCE, request.pages, request.nrPages, length);
                    request.bio.init(Bio.Op.WRITE, offset, length, bioFlags(flags), request.iter);
                }
                else {
                    request.clearPageBuffers();
                    request.iter.reset(IovIter.Direction.DEST, request.pages, request.nrPages, length);
                    request.bio.init(Bio.Op.READ, offset, length, 0, request.iter);
                }
                break;
            case CMD_FLUSH:
                request.bio.init(Bio.Op.FLUSH, 0, 0, 0, null);
                break;
            case CMD_TRIM:
                request.bio.init(Bio.Op.DISCARD, offset, length, bioFlags(flags), null);
                break;
            case CMD_WRITE_ZEROES:
                request.bio.init(Bio.Op.WRITE_ZEROES, offset, length, bioFlags(flags), null);
                break;
            case CMD_CACHE:
                request.bio.init(Bio.Op.CACHE, offset, length, 0, null);
                break;
            default:
                throw new AssertionError("validated command " + type);
        }
        request.bio.setEndIo(this, request);
        device.submit(request.bio);
    }

    /** 0, or the NBD error for a request that must not reach the device. */
    private int validate(int flags, int type, long offset, long length)
    {
        int allowedFlags;
        int neededTransmissionFlag;
        switch (type) {
            case CMD_READ:
                allowedFlags = structuredReplies ? CMD_FLAG_DF : 0;
                neededTransmissionFlag = 0;
                break;
            case CMD_WRITE:
                allowedFlags = CMD_FLAG_FUA;
                neededTransmissionFlag = 0;
                break;
            case CMD_FLUSH:
                allowedFlags = 0;
                neededTransmissionFlag = FLAG_SEND_FLUSH;
                break;
            case CMD_TRIM:
                allowedFlags = CMD_FLAG_FUA;
                neededTransmissionFlag = FLAG_SEND_TRIM;
                break;
            case CMD_WRITE_ZEROES:
                allowedFlags = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE
                        | ((transmissionFlags & FLAG_SEND_FAST_ZERO) != 0 ? CMD_FLAG_FAST_ZERO : 0);
                neededTransmissionFlag = FLAG_SEND_WRITE_ZEROES;
                break;
            case CMD_CACHE:
                allowedFlags = 0;
                neededTransmissionFlag = FLAG_SEND_CACHE;
                break;
            case CMD_BLOCK_STATUS:
                if (!baseAllocation) {
                    // The spec: BLOCK_STATUS without a selected metadata context SHOULD get EINVAL.
                    return NBD_EINVAL;
                }
                allowedFlags = CMD_FLAG_REQ_ONE;
                neededTransmissionFlag = 0;
                break;
            default:
                // RESIZE and the rest are not advertised: the spec's answer is EINVAL.
                return NBD_EINVAL;
        }
        // The spec: once FUA is negotiated the server MUST accept it on every command, if only by ignoring
        // it (older qemu sets it on FLUSH). It means something to WRITE, WRITE_ZEROES and TRIM only.
        if ((transmissionFlags & FLAG_SEND_FUA) != 0) {
            allowedFlags |= CMD_FLAG_FUA;
        }
        if ((flags & ~allowedFlags) != 0) {
            return NBD_EINVAL;
        }
        boolean writes = type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES;
        if (writes && (transmissionFlags & FLAG_READ_ONLY) != 0) {
            return NBD_EPERM;
        }
        if ((transmissionFlags & neededTransmissionFlag) != neededTransmissionFlag) {
            return NBD_EINVAL;
        }
        if ((flags & CMD_FLAG_FUA) != 0 && (transmissionFlags & FLAG_SEND_FUA) == 0) {
            return NBD_EINVAL;
        }
        if (type == CMD_FLUSH) {
            return 0;
        }
        if ((type == CMD_READ || type == CMD_WRITE) && length > MAX_REQUEST_LENGTH) {
            return NBD_EINVAL;
        }
        if (type == CMD_BLOCK_STATUS && length == 0) {
            return NBD_EINVAL;
        }
        // offset is unsigned on the wire: negative here means past 2^63, beyond any device
        long size = device.size();
        if (offset < 0) {
            return NBD_EINVAL;
        }
        if (offset > size || length > size - offset) {
            // The spec: a write that reaches past the end SHOULD get ENOSPC; other commands EINVAL.
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
        }
        return 0;
    }

    private static int bioFlags(int nbdFlags)
    {
        int flags = 0;
        if ((nbdFlags & CMD_FLAG_FUA) != 0) {
            flags |= Bio.REQ_FUA;
        }
        if ((nbdFlags & CMD_FLAG_NO_HOLE) != 0) {
            flags |= Bio.REQ_NOUNMAP;
        }
        if ((nbdFlags & CMD_FLAG_FAST_ZERO) != 0) {
            flags |= Bio.REQ_NOFALLBACK;
        }
        return flags;
    }

    /** Device thread: queues the reply. */
    @Override
    public void endIo(Bio bio, int error)
    {
        NbdRequest request = (NbdRequest) bio.privateData();
        if (request.structured && request.type == CMD_READ) {
            if (request.read.ended(bio, error)) {
                reply(request);
            }
            return;
        }
        request.error = NbdProtocol.nbdError(error);
        reply(request);
    }

    /**
     * The request's reply is ready: made by the reader thread (inside its own work, or a completion
     * inside its submit or unplug), it is answered in one go at the reader's next unplug; from any
     * other thread it goes to the writer.
     */
    private void reply(NbdRequest request)
    {
        if (Thread.currentThread() != reader) {
            writer.queue(request);
            return;
        }
        request.next = null;
        if (completedTail == null) {
            completedHead = request;
        }
        else {
            completedTail.next = request;
        }
        completedTail = request;
        completedCount++;
    }

    /**
     * Plans the chunks of a structured READ from the device's extents, takes pages from the first
     * data chunk to the end of the last, and submits one bio per data chunk. A read without data
     * chunks goes to the writer at once.
     */
    private void startStructuredRead(NbdRequest request, boolean dontFragment)
            throws IOException
    {
        StructuredRead read = request.read;
        read.plan(request.offset, request.length, device, dontFragment);
        long span = read.span();
        if (span == 0) {
            reply(request);
            return;
        }
        if (!allocatePages(request, span)) {
            request.error = NBD_ENOMEM;
            reply(request);
            return;
        }
        read.submit(request, device, this);
    }

    /** Answers BLOCK_STATUS for {@code base:allocation} into the request's status reply, or sets its error. */
    private void blockStatus(NbdRequest request, int flags)
    {
        ByteBuffer reply = request.statusReply().clear();
        reply.position(CHUNK_HEADER_SIZE + 4);
        statusCollector.start(reply, (flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : NbdRequest.MAX_EXTENTS, request.offset + request.length);
        long res = device.extents(request.offset, request.length, statusCollector);
        statusCollector.finish();
        if (res < 0 || statusCollector.count == 0) {
            request.error = res < 0 ? NbdProtocol.nbdError((int) res) : NBD_EIO;
            return;
        }
        reply.putInt(0, STRUCTURED_REPLY_MAGIC)
                .putShort(4, (short) REPLY_FLAG_DONE)
                .putShort(6, (short) REPLY_TYPE_BLOCK_STATUS)
                .putLong(8, request.cookie)
                .putInt(16, reply.position() - CHUNK_HEADER_SIZE)
                .putInt(CHUNK_HEADER_SIZE, BASE_ALLOCATION_ID);
        reply.flip();
    }

    /** Collects {@code base:allocation} extents into a BLOCK_STATUS chunk, merging equal neighbours. */
    private static final class StatusCollector
            implements ExtentSink
    {
        private ByteBuffer reply;
        private int max;
        private long end;
        int count;
        private long pendingLength;
        private int pendingFlags;

        void start(ByteBuffer reply, int max, long end)
        {
            this.reply = reply;
            this.max = max;
            this.end = end;
            this.count = 0;
            this.pendingLength = 0;
        }

        @Override
        public boolean extent(long offset, long length, int type)
        {
            // A backend reporting past the request is clipped: no extent may reach beyond it.
            length = Math.min(length, end - offset);
            if (length <= 0) {
                return false;
            }
            // ExtentSink's HOLE and ZERO are NBD_STATE_HOLE and NBD_STATE_ZERO
            int flags = type & (STATE_HOLE | STATE_ZERO);
            if (pendingLength > 0 && flags == pendingFlags) {
                // lengths sum to at most the request's u32 length
                pendingLength += length;
                return true;
            }
            if (pendingLength > 0) {
                emit();
                if (count == max) {
                    pendingLength = 0;
                    return false;
                }
            }
            pendingLength = length;
            pendingFlags = flags;
            return true;
        }

        void finish()
        {
            if (pendingLength > 0 && count < max) {
                emit();
            }
            pendingLength = 0;
            reply = null;
        }

        private void emit()
        {
            reply.putInt((int) pendingLength).putInt(pendingFlags);
            count++;
        }
    }

    private NbdRequest acquireRequest()
            throws IOException
    {
        NbdRequest request = pool.poll();
        if (request == null) {
            unplug();
            request = pool.take();
        }
        return request;
    }

    /** Takes budget and pages of {@code length} bytes for a READ or WRITE; false when the page pool can never hold it. */
    private boolean allocatePages(NbdRequest request, long length)
            throws IOException
    {
        if (!pool.fits(length)) {
            return false;
        }
        if (!pool.tryReserve(request, length)) {
            unplug();
            pool.reserve(request, length);
        }
        return true;
    }

    /** Reads a WRITE payload into the request's pages: what is buffered first, then straight from the socket. */
    private void readPayload(NbdRequest request)
            throws IOException
    {
        request.preparePageBuffers();
        ByteBuffer[] gather = request.gather;
        int count = request.nrPages;
        for (int i = 0; i < count; i++) {
            ByteBuffer page = request.pages[i].buffer();
            gather[i] = page;
            int n = Math.min(page.remaining(), in.remaining());
            if (n > 0) {
                int limit = in.limit();
                in.limit(in.position() + n);
                page.put(in);
                in.limit(limit);
            }
        }
        int first = 0;
        while (first < count && !gather[first].hasRemaining()) {
            first++;
        }
        if (first < count) {
            unplug();
        }
        try {
            while (first < count) {
                if (channel.read(gather, first, count - first) < 0) {
                    throw new EOFException("client closed the connection in the middle of a WRITE payload");
                }
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

    /** Reads and drops {@code length} bytes of payload, through the input buffer. */
    private void skip(long length)
            throws IOException
    {
        while (length > 0) {
            if (!in.hasRemaining()) {
                ensureBuffered(1, false);
            }
            int n = (int) Math.min(in.remaining(), length);
            in.position(in.position() + n);
            length -= n;
        }
    }

    /**
     * Makes at least {@code bytes} readable in the input buffer. Returns false on a clean end of input
     * (nothing buffered and {@code atBoundary}); throws on end of input in the middle of a message.
     */
    private boolean ensureBuffered(int bytes, boolean atBoundary)
            throws IOException
    {
        if (in.remaining() >= bytes) {
            return true;
        }
        unplug();
        in.compact();
        try {
            while (in.position() < bytes) {
                if (channel.read(in) < 0) {
                    if (atBoundary && in.position() == 0) {
                        return false;
                    }
                    throw new EOFException("client closed the connection in the middle of a request");
                }
            }
        }
        finally {
            in.flip();
        }
        return true;
    }

    private void unplug()
    {
        if (plugged) {
            plugged = false;
            device.unplug();
        }
        if (completedHead != null) {
            NbdRequest first = completedHead;
            NbdRequest last = completedTail;
            int n = completedCount;
            completedHead = null;
            completedTail = null;
            completedCount = 0;
            if (n > DIRECT_REPLIES) {
                writer.queueAll(first, last);
            }
            else {
                writer.sendOrQueue(first, last);
            }
        }
    }

    private static void joinUninterruptibly(Thread thread)
    {
        boolean interrupted = false;
        while (true) {
            try {
                thread.join();
                break;
            }
            catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
