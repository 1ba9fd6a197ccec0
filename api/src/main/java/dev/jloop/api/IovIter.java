package dev.jloop.api;

import java.nio.ByteBuffer;

/**
 * A cursor over the memory of one I/O request, after the kernel's {@code struct iov_iter}: a list of
 * segments, a current position in them and a remaining {@link #count()}. Backends and devices touch
 * request memory only through these methods, so the same backend code serves heap arrays, direct
 * buffers and pool pages.
 *
 * <p>Kinds: {@link Kind#IOVEC} segments are heap memory (no native address; native I/O needs a copy),
 * {@link Kind#KVEC} segments are direct {@link ByteBuffer}s, {@link Kind#BVEC} segments are pages of a
 * page pool. KVEC and BVEC segments have native addresses ({@link #isDirect()}).
 *
 * <p>Segment accessors take an index relative to the current position: segment 0 is the
 * unconsumed part of the current segment, and every length respects {@link #truncate(long)}.
 *
 * <p>Ownership and threading: the iterator does not own its memory; whoever built it (the frontend,
 * for a request) keeps the memory alive until the I/O that uses it has completed. An iterator is
 * not thread-safe: between submission and completion it belongs to the backend doing the I/O.
 */
public interface IovIter
{
    enum Kind
    {
        /** Heap segments ({@code byte[]} or heap buffers), like user-space {@code struct iovec}s. */
        IOVEC,
        /** Direct {@link ByteBuffer} segments, like {@code struct kvec}. */
        KVEC,
        /** Page-pool pages, like {@code struct bio_vec}. */
        BVEC,
    }

    /** Which way data flows, as the kernel's {@code ITER_SOURCE} / {@code ITER_DEST}. */
    enum Direction
    {
        /** The iterator is read from: the data of a write. */
        SOURCE,
        /** The iterator is written to: the buffer of a read. */
        DEST,
    }

    Kind kind();

    Direction direction();

    /** Bytes left, as {@code iov_iter_count}. */
    long count();

    /** Segments left that hold at least one byte of {@link #count()}. */
    int nrSegs();

    /** Moves the position forward by {@code bytes} ({@code iov_iter_advance}). */
    void advance(long bytes);

    /** Moves the position back by {@code bytes} already advanced over ({@code iov_iter_revert}). */
    void revert(long bytes);

    /** Limits {@link #count()} to at most {@code count} bytes ({@code iov_iter_truncate}). */
    void truncate(long count);

    /** Undoes a {@link #truncate(long)}: sets {@link #count()} back to {@code count} ({@code iov_iter_reexpand}). */
    void reexpand(long count);

    /**
     * Copies {@code min(src.remaining(), count())} bytes from {@code src} into the iterator
     * ({@code copy_to_iter}); advances both. Returns the number of bytes copied.
     */
    int copyToIter(ByteBuffer src);

    /** Copies from {@code src[offset, offset + length)} into the iterator; advances it. Returns bytes copied. */
    int copyToIter(byte[] src, int offset, int length);

    /**
     * Copies {@code min(dst.remaining(), count())} bytes out of the iterator into {@code dst}
     * ({@code copy_from_iter}); advances both. Returns the number of bytes copied.
     */
    int copyFromIter(ByteBuffer dst);

    /** Copies out of the iterator into {@code dst[offset, offset + length)}; advances it. Returns bytes copied. */
    int copyFromIter(byte[] dst, int offset, int length);

    /** Writes {@code min(bytes, count())} zero bytes into the iterator and advances ({@code iov_iter_zero}). */
    long zero(long bytes);

    /**
     * The OR of every remaining segment's native start address (direct kinds only) and length, as
     * {@code iov_iter_alignment}: {@code (alignment() & (4096 - 1)) == 0} means every segment may be
     * used for O_DIRECT I/O with 4096-byte logical blocks.
     */
    long alignment();

    /** Whether segments have native addresses (KVEC and BVEC). */
    boolean isDirect();

    /** Native address of the unconsumed part of segment {@code index}; only when {@link #isDirect()}. */
    long segmentAddress(int index);

    /** Unconsumed length of segment {@code index}, clipped by {@link #count()}. */
    int segmentLength(int index);

    /**
     * A buffer over the unconsumed part of segment {@code index}, positioned so that its
     * {@code remaining()} is {@link #segmentLength(int)}; direct for the direct kinds. The buffer is
     * the caller's alone (a new view, so that two iterators over one page, used by two threads,
     * cannot move each other's position); I/O on it does not advance the iterator (call
     * {@link #advance(long)}), and it must not be retained past the request.
     */
    ByteBuffer segmentBuffer(int index);
}
