package dev.jloop.filter;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.KvecIter;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The file a {@code blocksize} filter makes (see {@link BlocksizeFilterFactory}): it hands the file
 * below only requests aligned to {@code minblock}, with at most {@code maxdata} bytes of data or
 * {@code maxlen} bytes to trim or zero.
 *
 * <p>A request that does not fit is done in pieces, one after another, each started from the last
 * one's completion: so the file below never has more requests of this file in flight than this file
 * has, and its queue depth still holds. A piece is an aligned part handed down as it is (reads and
 * writes with the caller's own memory, truncated to the piece), or an edge: the block around an
 * unaligned start or end, read into a bounce buffer and, for a write or a zeroing, changed and
 * written back. The edges of a write or zeroing hold their block exclusively in a {@link RangeLock},
 * the aligned writes, trims and zeroes hold their range shared, so that no write falls between the
 * read and the write-back of a block; no thread waits for the lock.
 *
 * <p>A read or write that fails after some pieces succeeded completes as a short transfer of what
 * they moved, which the loop device resubmits; an edge's write-back that fails gives its bytes back
 * to the iterator first. The size is the file's own: the last, partial block of a file whose size is
 * not a multiple of {@code minblock} is read short and written back no further than the file goes.
 */
final class BlocksizeBackingFile
        extends ForwardingBackingFile
{
    private final int minblock;
    private final long maxdata;
    private final long maxlen;
    /** Null with a minblock of 1: nothing is read-modify-written, so no write needs ordering. */
    private final RangeLock lock;
    private final Capabilities capabilities;
    private final ConcurrentLinkedQueue<ByteBuffer> bounceBuffers = new ConcurrentLinkedQueue<>();

    BlocksizeBackingFile(BackingFile next, int minblock, long maxdata, long maxlen)
    {
        super(next);
        if (Integer.bitCount(minblock) != 1 || maxdata < minblock || maxdata % minblock != 0 || maxlen < minblock || maxlen % minblock != 0) {
            throw new IllegalArgumentException("minblock " + minblock + " must be a power of two dividing maxdata " + maxdata + " and maxlen " + maxlen);
        }
        this.minblock = minblock;
        this.maxdata = maxdata;
        this.maxlen = maxlen;
        this.lock = minblock > 1 ? new RangeLock() : null;
        this.capabilities = next.capabilities().toBuilder().logicalBlockSize(minblock).build();
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        if (fits(kiocb.pos(), kiocb.iter().count(), maxdata)) {
            return super.readIter(kiocb);
        }
        new Transfer(kiocb).start();
        return Kiocb.QUEUED;
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        if (lock == null && fits(kiocb.pos(), kiocb.iter().count(), maxdata)) {
            return super.writeIter(kiocb);
        }
        new Transfer(kiocb).start();
        return Kiocb.QUEUED;
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        // A punched hole reads as zeros, and the loop device punches to write zeroes too: both zero their edges.
        boolean zeroes = (kiocb.mode() & (Fallocate.PUNCH_HOLE | Fallocate.ZERO_RANGE)) != 0;
        // an empty or negative range gets the file's own answer
        if (kiocb.length() <= 0 || (zeroes ? lock == null && fits(kiocb.pos(), kiocb.length(), maxlen) : kiocb.length() <= maxlen)) {
            return super.fallocate(kiocb);
        }
        new Fallocation(kiocb, zeroes).start();
        return Kiocb.QUEUED;
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        long end = offset + length;
        long from = alignDown(offset);
        long to = alignUp(end);
        if (to != end) {
            // the rounded range must stay inside the file, which may end inside a block
            long size = super.size();
            to = Math.max(end, size < 0 ? end : Math.min(to, size));
        }
        if (from == offset && to == end) {
            return super.extents(offset, length, sink);
        }
        return super.extents(from, to - from, (at, bytes, type) -> {
            long start = Math.max(at, offset);
            long stop = Math.min(at + bytes, end);
            if (start >= stop) {
                return at + bytes <= offset;
            }
            return sink.extent(start, stop - start, type) && stop < end;
        });
    }

    @Override
    public long cache(long offset, long length)
    {
        long end = alignUp(offset + length);
        for (long at = alignDown(offset); at < end; at += maxdata) {
            long res = super.cache(at, Math.min(maxdata, end - at));
            if (res < 0) {
                return res;
            }
        }
        return 0;
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    private boolean fits(long pos, long count, long max)
    {
        return ((pos | count) & (minblock - 1)) == 0 && count <= max;
    }

    private long alignDown(long pos)
    {
        return pos & -minblock;
    }

    private long alignUp(long pos)
    {
        return (pos + minblock - 1) & -minblock;
    }

    private ByteBuffer takeBounceBuffer()
    {
        ByteBuffer buffer = bounceBuffers.poll();
        return buffer != null ? buffer : DirectMemory.allocateAligned(minblock);
    }

    /** Hands {@code piece} to the file below, as {@link ForwardingBackingFile#passDown} hands a child. */
    private static void submit(Kiocb piece)
    {
        piece.markSubmitted();
        long res;
        try {
            res = piece.callFile();
        }
        catch (RuntimeException e) {
            res = piece.inFlight() ? -Errno.EIO : Kiocb.QUEUED;
        }
        if (res != Kiocb.QUEUED) {
            piece.complete(res);
        }
    }

    /**
     * One request done in pieces. Steps run on the {@link Trampoline}; a piece's completion starts the
     * next step, on the thread that completed it.
     */
    private abstract class Pieces
    {
        final Kiocb kiocb;
        /** The one kiocb of every piece, prepared again for each: one piece is in flight at a time. */
        final Kiocb piece = new Kiocb(null);
        long at;
        private RangeLock.Range range;

        // The edge in progress: block [block, block + minblock), the request's part [lo, hi) of it.
        long block;
        int lo;
        int hi;
        ByteBuffer bounce;
        /** Bytes of the block read so far; fewer than minblock once the file ends inside it. */
        int filled;
        private int written;
        private int writeLength;
        private int writeFlags;

        Pieces(Kiocb kiocb)
        {
            this.kiocb = kiocb;
            this.at = kiocb.pos();
        }

        void start()
        {
            Trampoline.run(this::next);
        }

        /** Starts the next piece, or completes the request. */
        abstract void next();

        /** The edge's block is read ({@link #filled} bytes of it): use it, or change it and {@link #writeBlock}. */
        abstract void blockRead();

        /** The edge's block is written back. */
        abstract void blockWritten();

        /** A piece failed with {@code -errno}; its lock and buffer are given back. */
        abstract void failed(long res);

        /** Runs {@code then} holding {@code [start, end)}: at once without a lock. */
        void holding(long start, long end, boolean exclusive, Runnable then)
        {
            if (lock == null) {
                then.run();
                return;
            }
            range = new RangeLock.Range(start, end, exclusive);
            lock.acquire(range, then);
        }

        void release()
        {
            if (range != null) {
                RangeLock.Range held = range;
                range = null;
                lock.release(held);
            }
            if (bounce != null) {
                bounceBuffers.offer(bounce.clear());
                bounce = null;
            }
        }

        void submitPiece(Kiocb prepared, PieceDone then)
        {
            prepared.initCallback((k, res) -> Trampoline.run(() -> then.done(res)), null);
            submit(prepared);
        }

        /** Starts the edge around {@code [lo, hi)} of the block at {@code block}: reads the block, under an exclusive lock when it will be written. */
        void edge(long block, int lo, int hi, boolean writes)
        {
            this.block = block;
            this.lo = lo;
            this.hi = hi;
            this.filled = 0;
            this.bounce = takeBounceBuffer();
            if (writes) {
                holding(block, block + minblock, true, this::readBlock);
            }
            else {
                readBlock();
            }
        }

        private void readBlock()
        {
            ByteBuffer rest = bounce.duplicate().position(filled).limit(minblock);
            submitPiece(piece.initRw(Kiocb.Op.READ, delegate(), KvecIter.of(IovIter.Direction.DEST, rest), block + filled, 0), res -> {
                if (res < 0) {
                    release();
                    failed(res);
                    return;
                }
                filled += (int) res;
                if (res > 0 && filled < minblock) {
                    readBlock();
                    return;
                }
                blockRead();
            });
        }

        /** Writes {@code [0, length)} of the bounce buffer back to the block. */
        void writeBlock(int length, int flags)
        {
            written = 0;
            writeLength = length;
            writeFlags = flags;
            writeRest();
        }

        private void writeRest()
        {
            ByteBuffer rest = bounce.duplicate().position(written).limit(writeLength);
            submitPiece(piece.initRw(Kiocb.Op.WRITE, delegate(), KvecIter.of(IovIter.Direction.SOURCE, rest), block + written, writeFlags), res -> {
                if (res <= 0) {
                    release();
                    failed(res == 0 ? -Errno.EIO : res);
                    return;
                }
                written += (int) res;
                if (written < writeLength) {
                    writeRest();
                    return;
                }
                release();
                blockWritten();
            });
        }
    }

    @FunctionalInterface
    private interface PieceDone
    {
        void done(long res);
    }

    /** A read or write: head edge, aligned body in pieces of at most maxdata, tail edge, in the iterator's order. */
    private final class Transfer
            extends Pieces
    {
        private final IovIter iter;
        private final boolean write;
        private final long end;
        private long done;
        /** The edge in progress took its bytes from the iterator. */
        private boolean edgeCopied;

        Transfer(Kiocb kiocb)
        {
            super(kiocb);
            this.iter = kiocb.iter();
            this.write = kiocb.op() == Kiocb.Op.WRITE;
            this.end = kiocb.pos() + iter.count();
        }

        @Override
        void next()
        {
            if (at >= end) {
                kiocb.complete(done);
                return;
            }
            long blockStart = alignDown(at);
            if (at == blockStart && end - at >= minblock) {
                long length = Math.min(alignDown(end) - at, maxdata);
                if (write) {
                    holding(at, at + length, false, () -> body(length));
                }
                else {
                    body(length);
                }
            }
            else {
                edge(blockStart, (int) (at - blockStart), (int) (Math.min(end, blockStart + minblock) - blockStart), write);
            }
        }

        private void body(long length)
        {
            long remaining = iter.count();
            iter.truncate(length);
            submitPiece(piece.initRw(kiocb.op(), delegate(), iter, at, kiocb.flags()), res -> {
                release();
                iter.reexpand(remaining - Math.max(0, res));
                if (res < 0) {
                    failed(res);
                    return;
                }
                done += res;
                at += res;
                if (res < length) {
                    // short: the submitter resubmits the rest
                    kiocb.complete(done);
                    return;
                }
                next();
            });
        }

        @Override
        void blockRead()
        {
            if (!write) {
                int copied = Math.max(0, Math.min(hi, filled) - lo);
                if (copied > 0) {
                    iter.copyToIter(bounce.duplicate().position(lo).limit(lo + copied));
                }
                release();
                done += copied;
                at += copied;
                if (copied < hi - lo) {
                    // the file ends inside the block
                    kiocb.complete(done);
                    return;
                }
                next();
                return;
            }
            // past the end of the file the block is the bounce buffer's old bytes: zeros up to the write
            for (int i = filled; i < lo; i++) {
                bounce.put(i, (byte) 0);
            }
            iter.copyFromIter(bounce.duplicate().position(lo).limit(hi));
            edgeCopied = true;
            writeBlock(Math.max(filled, hi), kiocb.flags());
        }

        @Override
        void blockWritten()
        {
            edgeCopied = false;
            done += hi - lo;
            at += hi - lo;
            next();
        }

        @Override
        void failed(long res)
        {
            if (edgeCopied) {
                // the write-back failed: what the edge took from the iterator was not written
                iter.revert(hi - lo);
                edgeCopied = false;
            }
            kiocb.complete(done > 0 ? done : res);
        }
    }

    /**
     * An fallocate: aligned pieces of at most maxlen first, then, for a trim or zeroing, the
     * unaligned edges zeroed by read-modify-write. Bodies first, so that a zeroing the file below
     * refuses ({@code -EOPNOTSUPP}, which the loop device then does by writing) has changed nothing.
     */
    private final class Fallocation
            extends Pieces
    {
        private final boolean zeroes;
        private final long end;
        private boolean edges;

        Fallocation(Kiocb kiocb, boolean zeroes)
        {
            super(kiocb);
            this.zeroes = zeroes;
            this.end = kiocb.pos() + kiocb.length();
        }

        @Override
        void next()
        {
            while (at < end) {
                long blockStart = zeroes ? alignDown(at) : at;
                if (!zeroes || (at == blockStart && end - at >= minblock)) {
                    long length = Math.min((zeroes ? alignDown(end) : end) - at, maxlen);
                    if (!edges) {
                        holding(at, at + length, false, () -> body(length));
                        return;
                    }
                    at += length;
                    continue;
                }
                long edgeEnd = Math.min(end, blockStart + minblock);
                if (edges) {
                    edge(blockStart, (int) (at - blockStart), (int) (edgeEnd - blockStart), true);
                    return;
                }
                at = edgeEnd;
            }
            if (!edges && zeroes && minblock > 1) {
                edges = true;
                at = kiocb.pos();
                next();
                return;
            }
            kiocb.complete(0);
        }

        private void body(long length)
        {
            submitPiece(piece.initFallocate(delegate(), kiocb.mode(), at, length), res -> {
                release();
                if (res < 0) {
                    failed(res);
                    return;
                }
                at += length;
                next();
            });
        }

        @Override
        void blockRead()
        {
            // zero only what the file holds: zeroing past its end must not make it longer
            int stop = Math.min(hi, filled);
            if (stop <= lo) {
                release();
                at = block + hi;
                next();
                return;
            }
            for (int i = lo; i < stop; i++) {
                bounce.put(i, (byte) 0);
            }
            writeBlock(filled, 0);
        }

        @Override
        void blockWritten()
        {
            at = block + hi;
            next();
        }

        @Override
        void failed(long res)
        {
            kiocb.complete(res);
        }
    }
}
