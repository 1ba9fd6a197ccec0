package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;

import java.nio.ByteBuffer;

/**
 * One NBD request of a connection, pooled with everything it needs (bio, page iterator, page array,
 * reply header, gather array), so that the data path allocates nothing in steady state.
 *
 * <p>Ownership: the connection's reader takes it from the connection's {@link NbdRequestPool}, fills
 * it and submits its bio; from submission to end-io the bio and pages belong to the device; then the
 * reply writer owns it until it has written the reply and given it back to the pool. The
 * {@link #next} link threads it on the free list or the reply queue, whichever holds it.
 *
 * <p>With structured replies a READ is planned, read and answered in chunks by its
 * {@link StructuredRead}, which uses the request's pages and header buffers.
 */
final class NbdRequest
{
    final Bio bio = new Bio();
    final BvecIter iter = new BvecIter();
    final ByteBuffer replyHeader = ByteBuffer.allocateDirect(NbdProtocol.SIMPLE_REPLY_SIZE);
    Page[] pages = new Page[16];
    int nrPages;
    ByteBuffer[] gather = new ByteBuffer[17];

    long cookie;
    int type;
    /** NBD_CMD_FLAG_* of the request. */
    int flags;
    long offset;
    long length;
    /** Bytes taken from the connection's in-flight budget, given back on recycling. */
    int permits;
    /** NBD error of the reply (not errno). */
    int error;

    /** Reply with structured chunks (READ and BLOCK_STATUS once negotiated). */
    boolean structured;
    /** The chunks of a READ with structured replies. */
    final StructuredRead read = new StructuredRead();
    /** Chunk headers of a structured reply, built by the writer; direct, made on first use. */
    ByteBuffer chunkHeaders;
    /** The whole BLOCK_STATUS reply (chunk header, context id, extents); direct, made on first use. */
    ByteBuffer statusReply;

    /** io_uring loop: the data goes from the file to the socket by splice ({@link SplicedReads}), not through pages. */
    boolean spliced;
    /** io_uring loop: when a spliced READ was parsed, for its latency. */
    long spliceStart;

    /** io_uring loop: bytes of the send batch up to the end of this reply; the request is recycled once they are sent. */
    long sendEnd;

    NbdRequest next;

    void reset(long cookie, int type, int flags, long offset, long length)
    {
        this.cookie = cookie;
        this.type = type;
        this.flags = flags;
        this.offset = offset;
        this.length = length;
        this.error = 0;
        this.structured = false;
        this.spliced = false;
        this.read.clear();
        this.permits = 0;
        this.nrPages = 0;
    }

    ByteBuffer chunkHeaders()
    {
        if (chunkHeaders == null) {
            // per chunk at most a 20-byte header, 8-byte offset and 4-byte hole length; plus an error chunk
            chunkHeaders = ByteBuffer.allocateDirect(StructuredRead.MAX_CHUNKS * 32 + 256);
        }
        return chunkHeaders;
    }

    ByteBuffer statusReply()
    {
        if (statusReply == null) {
            statusReply = ByteBuffer.allocateDirect(NbdProtocol.CHUNK_HEADER_SIZE + 4 + 8 * BlockStatus.MAX_EXTENTS);
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
