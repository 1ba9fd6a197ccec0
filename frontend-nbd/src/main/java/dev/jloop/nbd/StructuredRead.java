package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.api.BioEndIo;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.IovIter;
import dev.jloop.iter.BvecIter;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR_OFFSET;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_NONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.nbdError;

/**
 * A READ answered with structured chunks (docs/nbd.md, "Structured replies"): which parts of it are
 * data and which are holes, the bios that read the data, and the chunks that carry the answer.
 *
 * <p>Planning: a READ of at least {@link #HOLE_MIN} bytes asks the device for its extents first,
 * unless it lies in the data extent the connection knows ({@link KnownData}).
 * Holes of at least {@code HOLE_MIN} become OFFSET_HOLE chunks that are neither read nor sent; the
 * rest become OFFSET_DATA chunks, with smaller holes sent as data, as a separate chunk and bio would
 * cost more than the zeros. At most {@link #MAX_CHUNKS} chunks: the rest of a more fragmented read
 * is one data chunk. A read wholly inside a hole is one OFFSET_HOLE chunk and touches no page; with
 * NBD_CMD_FLAG_DF a read that is not a single hole is one data chunk; a read of length 0 has no chunk
 * and is answered with NBD_REPLY_TYPE_NONE.
 *
 * <p>Reading: the request's pages cover {@code [pageBase, pageBase + span)} relative to the request's
 * offset, from the first data chunk to the end of the last (small gaps between them included); each
 * data chunk has its own bio over its part of the pages, and the reply is ready once the last of them
 * ends ({@link #ended}).
 *
 * <p>Encoding: the chunk headers are written into the request's header buffer as they come; each
 * data chunk gathers the headers not yet sent and the page buffers holding the chunk's bytes
 * (positions and limits set for that chunk), and as the header buffer and a page may serve two
 * chunks, what is gathered is written before the next chunk reuses them. The last chunk carries
 * NBD_REPLY_FLAG_DONE. A chunk that failed to read makes the whole reply one ERROR_OFFSET chunk.
 *
 * <p>Ownership: pooled with its {@link NbdRequest} and owned as it is: planned and submitted by the
 * reader, the device's while bios are in flight, encoded by whoever writes the reply.
 */
final class StructuredRead
        implements ExtentSink
{
    /**
     * Smallest hole a structured READ skips, and smallest READ that asks for extents: below this a
     * separate chunk and bio cost more than sending the zeros.
     */
    static final int HOLE_MIN = 32 << 10;
    /** Most chunks of one structured READ reply; the rest of a more fragmented read is sent as data. */
    static final int MAX_CHUNKS = 16;

    /** Chunk {@code k}, made once for this pooled read; offsets relative to the request's. */
    private static final class Chunk
    {
        final Bio bio = new Bio();
        final BvecIter iter = new BvecIter();
        long offset;
        long length;
        boolean hole;
        /** errno of the chunk's bio; 0 when it succeeded. */
        int error;
    }

    private final Chunk[] chunks = new Chunk[MAX_CHUNKS];
    private int count;
    private int firstData;
    private int lastData;
    private int dataChunks;
    private long pageBase;
    private final AtomicInteger pendingBios = new AtomicInteger();
    // While the device reports extents (the reader's plan): the read's range, and how much of it the chunks cover.
    private long planOffset;
    private long planLength;
    private long covered;
    private KnownData known;

    /** No chunks: a READ of length 0, or one answered with an error. */
    void clear()
    {
        count = 0;
        dataChunks = 0;
        pageBase = 0;
    }

    /**
     * Splits a READ of {@code length} bytes at {@code offset} into chunks; from the device's extents
     * where it has them and {@code known} does not already say the READ is all data.
     */
    void plan(long offset, long length, BlockDevice device, boolean dontFragment, KnownData known)
    {
        clear();
        if (length >= HOLE_MIN && device.capabilities().extents() && !known.covers(offset, length)) {
            planOffset = offset;
            planLength = length;
            covered = 0;
            this.known = known;
            // Past the READ too (within the device): the data extent it finds serves the READs that follow.
            long ask = Math.max(length, Math.min(KnownData.AHEAD, device.size() - offset));
            long res;
            try {
                res = device.extents(offset, ask, this);
            }
            finally {
                this.known = null;
            }
            if (res < 0) {
                known.forget();
                // Extents are an optimisation: without them the read is plain data.
                count = 0;
                covered = 0;
            }
            if (covered < length) {
                add(covered, length - covered, false);
            }
        }
        else {
            add(0, length, false);
        }
        if (dontFragment && count > 1) {
            count = 0;
            add(0, length, false);
        }
        firstData = -1;
        for (int k = 0; k < count; k++) {
            if (!chunks[k].hole) {
                if (firstData < 0) {
                    firstData = k;
                }
                lastData = k;
                dataChunks++;
            }
        }
    }

    @Override
    public boolean extent(long offset, long length, int type)
    {
        if (type == ExtentSink.DATA) {
            known.learn(offset, length);
        }
        long relative = offset - planOffset;
        length = Math.min(length, planLength - relative);
        if (length <= 0) {
            return false;
        }
        boolean hole = (type & ExtentSink.ZERO) != 0 && length >= HOLE_MIN;
        if (count > 0 && chunks[count - 1].hole == hole) {
            chunks[count - 1].length += length;
        }
        else if (count >= MAX_CHUNKS - 1) {
            // keep the last chunk for the rest, sent as data
            return false;
        }
        else {
            add(relative, length, hole);
        }
        covered = relative + length;
        return true;
    }

    /** Whether the plan is one data chunk over the whole READ: no hole to skip. */
    boolean isOneDataChunk()
    {
        return count == 1 && dataChunks == 1;
    }

    /** Bytes from the start of the first data chunk to the end of the last, which pages must hold; 0 when all is holes. */
    long span()
    {
        if (dataChunks == 0) {
            return 0;
        }
        return chunks[lastData].offset + chunks[lastData].length - chunks[firstData].offset;
    }

    /**
     * Points one bio per data chunk at its part of the request's pages, which hold {@link #span()}
     * bytes, and submits them. The request may be recycled as soon as its last bio is submitted.
     */
    void submit(NbdRequest request, BlockDevice device, BioEndIo endIo)
    {
        int first = firstData;
        int last = lastData;
        long base = chunks[first].offset;
        long span = span();
        pageBase = base;
        request.clearPageBuffers();
        for (int k = first; k <= last; k++) {
            Chunk chunk = chunks[k];
            if (chunk.hole) {
                continue;
            }
            chunk.iter.reset(IovIter.Direction.DEST, request.pages, request.nrPages, span);
            chunk.iter.advance(chunk.offset - base);
            chunk.iter.truncate(chunk.length);
            chunk.bio.init(Bio.Op.READ, request.offset + chunk.offset, chunk.length, 0, chunk.iter)
                    .setEndIo(endIo, request);
        }
        pendingBios.set(dataChunks);
        // Nothing of the request may be touched after its last bio is submitted: it may be recycled by then.
        Chunk[] chunks = this.chunks;
        for (int k = first; k <= last; k++) {
            if (!chunks[k].hole) {
                device.submit(chunks[k].bio);
            }
        }
    }

    /** Device thread: the bio of one data chunk ended; true when it was the last, and the reply is ready. */
    boolean ended(Bio bio, int error)
    {
        if (error != 0) {
            chunks[chunkOf(bio)].error = error;
        }
        // The decrement publishes the error to whoever queues the reply.
        return pendingBios.decrementAndGet() == 0;
    }

    /** Encodes the reply of the request this read belongs to into {@code out}. */
    void encode(NbdRequest request, ReplyOutput out)
    {
        for (int k = 0; k < count; k++) {
            if (chunks[k].error != 0) {
                // The read failed in this chunk: one error chunk stands for the whole reply.
                out.gather(errorChunk(request, REPLY_TYPE_ERROR_OFFSET, nbdError(chunks[k].error), request.offset + chunks[k].offset));
                return;
            }
        }
        ByteBuffer headers = request.chunkHeaders().clear();
        if (count == 0) {
            // a zero-length READ
            chunkHeader(headers, request, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0);
            out.gather(headers.flip());
            return;
        }
        int mark = 0;
        boolean headersGathered = false;
        int page = 0;
        long pageStart = 0;
        for (int k = 0; k < count; k++) {
            Chunk chunk = chunks[k];
            int flags = k == count - 1 ? REPLY_FLAG_DONE : 0;
            if (headersGathered) {
                // The previous data chunk's window of the header buffer, and maybe its last page, must go first.
                out.flush();
                headers.limit(headers.capacity()).position(mark);
                headersGathered = false;
            }
            if (chunk.hole) {
                chunkHeader(headers, request, flags, REPLY_TYPE_OFFSET_HOLE, 12)
                        .putLong(request.offset + chunk.offset)
                        .putInt((int) chunk.length);
                continue;
            }
            chunkHeader(headers, request, flags, REPLY_TYPE_OFFSET_DATA, 8 + chunk.length)
                    .putLong(request.offset + chunk.offset);
            int end = headers.position();
            out.gather(headers.limit(end).position(mark));
            headersGathered = true;
            long from = chunk.offset - pageBase;
            long to = from + chunk.length;
            while (pageStart + request.pages[page].size() <= from) {
                pageStart += request.pages[page].size();
                page++;
            }
            long start = pageStart;
            for (int i = page; i < request.nrPages && start < to; i++) {
                int size = request.pages[i].size();
                ByteBuffer buffer = request.pages[i].buffer().clear();
                buffer.limit((int) Math.min(to - start, size)).position((int) Math.max(from - start, 0));
                out.gather(buffer);
                start += size;
            }
            mark = end;
        }
        if (!headersGathered && headers.position() > mark) {
            // hole chunks after the last data chunk, or a reply of holes only
            out.gather(headers.limit(headers.position()).position(mark));
        }
    }

    /**
     * The one chunk of a structured reply that failed: {@code type} ERROR for a request refused before
     * it reached the device, ERROR_OFFSET with the offset of the chunk that failed to read. In the
     * request's header buffer; {@code error} is an NBD error.
     */
    static ByteBuffer errorChunk(NbdRequest request, int type, int error, long offset)
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
        return chunk.flip();
    }

    private static ByteBuffer chunkHeader(ByteBuffer buffer, NbdRequest request, int flags, int type, long length)
    {
        return buffer.putInt(STRUCTURED_REPLY_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(request.cookie)
                .putInt((int) length);
    }

    private void add(long relativeOffset, long length, boolean hole)
    {
        if (count > 0 && chunks[count - 1].hole == hole) {
            chunks[count - 1].length += length;
            return;
        }
        if (chunks[count] == null) {
            chunks[count] = new Chunk();
        }
        Chunk chunk = chunks[count++];
        chunk.offset = relativeOffset;
        chunk.length = length;
        chunk.hole = hole;
        chunk.error = 0;
    }

    /** Which chunk a bio ended for: a handful of chunks at most, so a scan. */
    private int chunkOf(Bio bio)
    {
        for (int k = 0; k < count; k++) {
            if (chunks[k].bio == bio) {
                return k;
            }
        }
        throw new IllegalStateException("bio of no chunk: " + bio);
    }
}
