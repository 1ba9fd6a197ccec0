package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One NBD request of a connection, pooled with everything it needs (bio, page iterator, page array,
 * reply header, gather array), so that the data path allocates nothing in steady state.
 *
 * <p>Ownership: the connection's reader takes it from the connection's {@link NbdRequestPool}, fills
 * it and submits its bio; from submission to end-io the bio and pages belong to the device; then the
 * reply writer owns it until it has written the reply and given it back to the pool. The
 * {@link #next} link threads it on the free list or the reply queue, whichever holds it.
 *
 * <p>With structured replies a READ is planned as up to {@link #MAX_READ_CHUNKS} chunks, data or
 * hole, relative to {@link #offset}. Pages cover {@code [pageBase, pageBase + pages' length)}: the
 * data chunks and whatever small gaps lie between them; each data chunk has its own bio over its
 * part of the pages, and the reply is queued once the last of them ends ({@link #pendingBios}).
 */
final class NbdRequest
{
    /** Most chunks of one structured READ reply; the rest of a more fragmented read is sent as data. */
    static final int MAX_READ_CHUNKS = 16;
    /** Most extents in one BLOCK_STATUS reply (the spec allows 2^20); clients ask again for the rest. */
    static final int MAX_EXTENTS = 1024;

    final Bio bio = new Bio();
    final BvecIter iter = new BvecIter();
    final ByteBuffer replyHeader = ByteBuffer.allocateDirect(NbdProtocol.SIMPLE_REPLY_SIZE);
    Page[] pages = new Page[16];
    int nrPages;
    ByteBuffer[] gather = new ByteBuffer[17];

    long cookie;
    int type;
    long length;
    /** Bytes taken from the connection's in-flight budget, given back on recycling. */
    int permits;
    /** NBD error of the reply (not errno). */
    int error;

    /** Reply with structured chunks (READ and BLOCK_STATUS once negotiated). */
    boolean structured;
    long offset;
    /** Structured READ: the planned chunks, offsets relative to {@link #offset}. */
    int nrChunks;
    final long[] chunkOffset = new long[MAX_READ_CHUNKS];
    final long[] chunkLength = new long[MAX_READ_CHUNKS];
    final boolean[] chunkHole = new boolean[MAX_READ_CHUNKS];
    /** errno of each data chunk's bio (0 when it succeeded). */
    final int[] chunkError = new int[MAX_READ_CHUNKS];
    final Bio[] chunkBios = new Bio[MAX_READ_CHUNKS];
    final BvecIter[] chunkIters = new BvecIter[MAX_READ_CHUNKS];
    final AtomicInteger pendingBios = new AtomicInteger();
    long pageBase;
    /** Chunk headers of a structured reply, built by the writer; direct, made on first use. */
    ByteBuffer chunkHeaders;
    /** The whole BLOCK_STATUS reply (chunk header, context id, extents); direct, made on first use. */
    ByteBuffer statusReply;

    NbdRequest next;

    void reset(long cookie, int type, long length)
    {
        this.cookie = cookie;
        this.type = type;
        this.length = length;
        this.error = 0;
        this.structured = false;
        this.offset = 0;
        this.nrChunks = 0;
        this.pageBase = 0;
        this.permits = 0;
        this.nrPages = 0;
    }

    /** Appends a chunk of a structured READ, merging it into the last one when of the same kind. */
    void addChunk(long relativeOffset, long length, boolean hole)
    {
        if (nrChunks > 0 && chunkHole[nrChunks - 1] == hole) {
            chunkLength[nrChunks - 1] += length;
            return;
        }
        chunkOffset[nrChunks] = relativeOffset;
        chunkLength[nrChunks] = length;
        chunkHole[nrChunks] = hole;
        chunkError[nrChunks] = 0;
        nrChunks++;
    }

    /** The bio of chunk {@code k}, made once for this pooled request. */
    Bio chunkBio(int k)
    {
        if (chunkBios[k] == null) {
            chunkBios[k] = new Bio();
            chunkIters[k] = new BvecIter();
        }
        return chunkBios[k];
    }

    /** Which chunk a bio ended for: a handful of chunks at most, so a scan. */
    int chunkOf(Bio bio)
    {
        for (int k = 0; k < nrChunks; k++) {
            if (chunkBios[k] == bio) {
                return k;
            }
        }
        throw new IllegalStateException("bio of no chunk: " + bio);
    }

    ByteBuffer chunkHeaders()
    {
        if (chunkHeaders == null) {
            // per chunk at most a 20-byte header, 8-byte offset and 4-byte hole length; plus an error chunk
            chunkHeaders = ByteBuffer.allocateDirect(MAX_READ_CHUNKS * 32 + 256);
        }
        return chunkHeaders;
    }

    ByteBuffer statusReply()
    {
        if (statusReply == null) {
            statusReply = ByteBuffer.allocateDirect(NbdProtocol.CHUNK_HEADER_SIZE + 4 + 8 * MAX_EXTENTS);
        }
        return statusReply;
    }

    /** Makes room for {@code maxPages} pages, growing the arrays once for this pooled request. */
    void ensurePages(int maxPages)
    {
        if (pages.length < maxPages) {
            pages = new Page[maxPages];
            gather = new ByteBuffer[maxPages + 1];
        }
    }

    /**
     * Gives the page buffers their full position 0 and limit: the iterators address pages with
     * absolute gets and puts, which are bounded by the limit, and the next owner of a freed page
     * expects it whole.
     */
    void clearPageBuffers()
    {
        for (int i = 0; i < nrPages; i++) {
            pages[i].buffer().clear();
        }
    }

    /** Sets every page buffer to cover this request's part of it, for socket I/O. */
    void preparePageBuffers()
    {
        long left = length;
        for (int i = 0; i < nrPages; i++) {
            ByteBuffer buffer = pages[i].buffer();
            int bytes = (int) Math.min(buffer.capacity(), left);
            buffer.clear().limit(bytes);
            left -= bytes;
        }
    }
}
