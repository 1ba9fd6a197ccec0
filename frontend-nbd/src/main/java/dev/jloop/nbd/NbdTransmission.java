package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOMEM;
import static java.util.Objects.requireNonNull;

/**
 * The transmission phase of one connection, in one room: the reader (this thread) takes each request
 * in turn through parsing and checking ({@link NbdRequestReader}), pages and budget
 * ({@link NbdRequestPool}) and submission ({@link NbdSubmitter}), without waiting for earlier ones;
 * replies go out through the {@link NbdReplyWriter}, on its own thread, in completion order.
 *
 * <p>Structured replies, once negotiated, answer READ and BLOCK_STATUS (other commands keep simple
 * replies, as the spec allows): a READ is planned from the device's extents and read in chunks by
 * its {@link StructuredRead}; BLOCK_STATUS is answered on this thread by {@link BlockStatus}.
 *
 * <p>The reader holds the device's plug while it works through requests already in its input
 * buffer, and drops it before anything that may block (a socket read, waiting for a request, budget
 * or pages): every such wait is in this class, after an unplug.
 *
 * <p>Bad requests are answered with an error and the connection goes on: the payload of a refused
 * WRITE (out of range, read-only export, larger than {@link NbdRequestReader#MAX_REQUEST_LENGTH}) is
 * read and dropped, never allocated. Only a bad request magic ends the connection, as the stream can
 * no longer be parsed.
 *
 * <p>Made on the connection's thread, which then runs it as the reader.
 */
final class NbdTransmission
{
    private static final Logger log = LoggerFactory.getLogger(NbdTransmission.class);

    private final BlockDevice device;
    private final String peer;
    private final NbdRequestReader requests;
    private final NbdRequestPool pool;
    private final NbdReplyWriter writer;
    private final NbdSubmitter submitter;
    private final BlockStatus blockStatus;
    private final NbdConnectionCounters counters;

    NbdTransmission(
            NbdChannel channel,
            BlockDevice device,
            int transmissionFlags,
            boolean structuredReplies,
            boolean baseAllocation,
            PagePool pagePool,
            int maxInflightBytes,
            int maxInflightRequests,
            String peer,
            NbdConnectionCounters counters)
    {
        this.counters = requireNonNull(counters, "counters is null");
        this.device = requireNonNull(device, "device is null");
        this.peer = requireNonNull(peer, "peer is null");
        this.requests = new NbdRequestReader(channel, device, transmissionFlags, structuredReplies, baseAllocation);
        this.pool = new NbdRequestPool(pagePool, maxInflightBytes, maxInflightRequests);
        this.writer = new NbdReplyWriter(channel, pool, peer, counters);
        this.submitter = new NbdSubmitter(device, writer, Thread.currentThread());
        this.blockStatus = new BlockStatus(device);
    }

    NbdReplyWriter writer()
    {
        return writer;
    }

    /** Requests taken and not yet answered. */
    int inFlight()
    {
        return pool.inUse();
    }

    /**
     * Serves requests until NBD_CMD_DISC, end of input or an error, then waits until every request in
     * flight has completed and its reply was written (or dropped) before returning.
     */
    void run(String threadName)
            throws IOException
    {
        Thread writerThread = new Thread(writer, threadName + "-writer");
        writerThread.setDaemon(true);
        writerThread.start();
        try {
            serve();
        }
        finally {
            submitter.unplug();
            pool.awaitAllReturned();
            writer.stop();
            joinUninterruptibly(writerThread);
        }
    }

    private void serve()
            throws IOException
    {
        while (true) {
            if (!requests.hasRequest()) {
                submitter.unplug();
                if (!requests.awaitRequest()) {
                    log.debug("{}: end of input without NBD_CMD_DISC", peer);
                    return;
                }
            }
            submitter.plug();
            if (requests.parseHeader() == CMD_DISC) {
                log.debug("{}: NBD_CMD_DISC", peer);
                return;
            }

            NbdRequest request = acquireRequest();
            requests.describe(request);
            counters.request(request.type == CMD_READ || request.type == CMD_WRITE ? request.length : 0);
            try {
                start(request);
            }
            catch (IOException | RuntimeException e) {
                // Never submitted nor queued: it is still ours to give back.
                pool.recycle(request);
                throw e;
            }
        }
    }

    /** Hands the request to the device, or answers it at once. */
    private void start(NbdRequest request)
            throws IOException
    {
        int type = request.type;
        long length = request.length;
        int error = requests.validate(request);
        if (error != 0) {
            log.debug("{}: {} offset={} length={} flags=0x{} refused with NBD error {}",
                    peer, NbdProtocol.commandName(type), request.offset, length, Integer.toHexString(request.flags), error);
            if (type == CMD_WRITE) {
                skipPayload(length);
            }
            request.error = error;
            submitter.reply(request);
            return;
        }
        if (type == CMD_BLOCK_STATUS) {
            blockStatus.answer(request);
            submitter.reply(request);
            return;
        }
        if (length == 0 && type != CMD_FLUSH) {
            // Nothing to do, and a zero-length bio is not something devices need to handle.
            submitter.reply(request);
            return;
        }
        if (type == CMD_READ && request.structured) {
            startStructuredRead(request);
            return;
        }
        if (type == CMD_READ || type == CMD_WRITE) {
            if (!allocatePages(request, length)) {
                if (type == CMD_WRITE) {
                    skipPayload(length);
                }
                request.error = NBD_ENOMEM;
                submitter.reply(request);
                return;
            }
            if (type == CMD_WRITE && !requests.takeBufferedPayload(request)) {
                submitter.unplug();
                requests.readPayload(request);
            }
        }
        submitter.submit(request);
    }

    /**
     * Plans the chunks of a structured READ, takes pages from the first data chunk to the end of the
     * last, and submits one bio per data chunk. A read without data chunks is answered at once.
     */
    private void startStructuredRead(NbdRequest request)
            throws IOException
    {
        StructuredRead read = request.read;
        read.plan(request.offset, request.length, device, (request.flags & CMD_FLAG_DF) != 0, submitter.knownData());
        long span = read.span();
        if (span == 0) {
            submitter.reply(request);
            return;
        }
        if (!allocatePages(request, span)) {
            request.error = NBD_ENOMEM;
            submitter.reply(request);
            return;
        }
        submitter.submitStructuredRead(request);
    }

    private NbdRequest acquireRequest()
            throws IOException
    {
        NbdRequest request = pool.poll();
        if (request == null) {
            submitter.unplug();
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
            submitter.unplug();
            pool.reserve(request, length);
        }
        return true;
    }

    /** Reads and drops the payload of a refused WRITE. */
    private void skipPayload(long length)
            throws IOException
    {
        long left = requests.skipBuffered(length);
        if (left > 0) {
            submitter.unplug();
            requests.skip(left);
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
