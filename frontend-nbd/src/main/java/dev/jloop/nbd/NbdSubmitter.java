package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.api.BioEndIo;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.IovIter;

import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static java.util.Objects.requireNonNull;

/**
 * Submits the requests of one connection to its device, and hands every reply to the reply writer
 * (a {@link ReplySink}: the writer thread, or the connection's io_uring loop) once it is ready, in
 * completion order.
 *
 * <p>Completions run on device threads that must never wait for a slow client, so there a reply
 * is only queued for the writer thread. Replies made inside the reader's own work (refusals,
 * BLOCK_STATUS, requests that complete inside its submission: page-cache hits, backends that answer
 * at once) are collected instead and, at the reader's next {@link #unplug}, sent by the reader itself
 * in one gathering write when they are few (no thread hand-off), or handed to the writer in one go
 * when they are many (written while the reader parses on). Simple and structured replies take
 * either way alike.
 *
 * <p>The reader holds the device's plug while it works through requests already in its input
 * buffer, and drops it ({@link #unplug}) before anything that may block, so a batch is submitted
 * together but nothing waits behind a plug.
 *
 * <p>Used on the connection's reader thread, but for {@link #endIo}.
 */
final class NbdSubmitter
        implements BioEndIo
{
    private final BlockDevice device;
    private final ReplySink writer;
    private final Thread reader;
    /** The data extent known to the connection's structured READs; reader only. */
    private final KnownData knownData = new KnownData();
    private boolean plugged;
    /** Replies of requests that completed in the reader thread itself, sent when it unplugs. Reader only. */
    private NbdRequest completedHead;
    private NbdRequest completedTail;
    private int completedCount;

    /** @param reader the connection's reader thread, which alone submits, plugs and unplugs */
    NbdSubmitter(BlockDevice device, ReplySink writer, Thread reader)
    {
        this.device = requireNonNull(device, "device is null");
        this.writer = requireNonNull(writer, "writer is null");
        this.reader = requireNonNull(reader, "reader is null");
    }

    /** Holds the device's plug, if not held already: what is submitted until {@link #unplug} goes to the backend together. */
    void plug()
    {
        if (!plugged) {
            device.plug();
            plugged = true;
        }
    }

    /** Drops the plug, and hands on the replies of requests that completed in the reader. */
    void unplug()
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
            writer.readerReplies(first, last, n);
        }
    }

    /**
     * Submits the one bio of a checked request: for READ and WRITE over the request's pages, which hold
     * the payload of a WRITE. The request may be recycled as soon as it is submitted.
     */
    void submit(NbdRequest request)
    {
        Bio bio = request.bio;
        switch (request.type) {
            case CMD_READ:
                request.clearPageBuffers();
                request.iter.reset(IovIter.Direction.DEST, request.pages, request.nrPages, request.length);
                bio.init(Bio.Op.READ, request.offset, request.length, 0, request.iter);
                break;
            case CMD_WRITE:
                request.clearPageBuffers();
                request.iter.reset(IovIter.Direction.SOURCE, request.pages, request.nrPages, request.length);
                bio.init(Bio.Op.WRITE, request.offset, request.length, bioFlags(request.flags), request.iter);
                break;
            case CMD_FLUSH:
                bio.init(Bio.Op.FLUSH, 0, 0, 0, null);
                break;
            case CMD_TRIM:
                knownData.forget();
                bio.init(Bio.Op.DISCARD, request.offset, request.length, bioFlags(request.flags), null);
                break;
            case CMD_WRITE_ZEROES:
                knownData.forget();
                bio.init(Bio.Op.WRITE_ZEROES, request.offset, request.length, bioFlags(request.flags), null);
                break;
            case CMD_CACHE:
                bio.init(Bio.Op.CACHE, request.offset, request.length, 0, null);
                break;
            default:
                throw new AssertionError("validated command " + request.type);
        }
        bio.setEndIo(this, request);
        device.submit(bio);
    }

    /** The data extent the connection knows, for planning structured READs (reader only). */
    KnownData knownData()
    {
        return knownData;
    }

    /** Submits the bios of a planned structured READ whose pages are taken. */
    void submitStructuredRead(NbdRequest request)
    {
        request.read.submit(request, device, this);
    }

    /** Device thread: queues the reply once the request's last bio has ended. */
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
    void reply(NbdRequest request)
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
}
