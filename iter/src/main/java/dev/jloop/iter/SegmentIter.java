package dev.jloop.iter;

import dev.jloop.api.IovIter;

import java.nio.ByteBuffer;

import static java.util.Objects.requireNonNull;

/**
 * The cursor logic shared by every {@link IovIter} kind: an array of segments, the current segment
 * and the offset in it, and the remaining count. Subclasses say where a segment's memory is
 * ({@link #view(int)}, {@link #base(int)}, {@link #address(int)}).
 *
 * <p>Copies use absolute bulk {@code put}s: no buffer is created per call.
 */
abstract class SegmentIter
        implements IovIter
{
    private static final byte[] ZEROS = new byte[64 * 1024];

    private final Kind kind;
    private Direction direction;
    /** Segment lengths; {@code nr} of them are used. */
    private int[] lengths = new int[0];
    private int nr;

    private int seg;
    private int segOffset;
    private long count;

    SegmentIter(Kind kind)
    {
        this.kind = kind;
    }

    /** Starts over on {@code nr} segments of the given lengths, covering {@code count} bytes of them. */
    final void reset(Direction direction, int[] lengths, int nr, long count)
    {
        this.direction = requireNonNull(direction, "direction is null");
        long total = 0;
        for (int i = 0; i < nr; i++) {
            if (lengths[i] < 0) {
                throw new IllegalArgumentException("negative segment length");
            }
            total += lengths[i];
        }
        if (count < 0 || count > total) {
            throw new IllegalArgumentException("count " + count + " outside the " + total + " bytes of the segments");
        }
        this.lengths = lengths;
        this.nr = nr;
        this.seg = 0;
        this.segOffset = 0;
        this.count = count;
        skipEmpty();
    }

    /** The buffer holding segment {@code k}; position and limit are the iterator's to set. */
    abstract ByteBuffer view(int k);

    /** Index in {@link #view(int)} where segment {@code k} starts. */
    abstract int base(int k);

    /** Native address where segment {@code k} starts; only for direct kinds. */
    abstract long address(int k);

    @Override
    public final Kind kind()
    {
        return kind;
    }

    @Override
    public final Direction direction()
    {
        return direction;
    }

    @Override
    public final long count()
    {
        return count;
    }

    @Override
    public final int nrSegs()
    {
        int n = 0;
        long left = count;
        for (int k = seg; k < nr && left > 0; k++) {
            int len = lengths[k] - (k == seg ? segOffset : 0);
            if (len > 0) {
                n++;
                left -= len;
            }
        }
        return n;
    }

    @Override
    public final void advance(long bytes)
    {
        if (bytes < 0 || bytes > count) {
            throw new IllegalArgumentException("advance by " + bytes + " with " + count + " left");
        }
        count -= bytes;
        while (bytes > 0) {
            int left = lengths[seg] - segOffset;
            if (bytes < left) {
                segOffset += (int) bytes;
                break;
            }
            bytes -= left;
            seg++;
            segOffset = 0;
        }
        skipEmpty();
    }

    @Override
    public final void revert(long bytes)
    {
        if (bytes < 0) {
            throw new IllegalArgumentException("negative revert: " + bytes);
        }
        long consumed = 0;
        for (int k = 0; k < seg && k < nr; k++) {
            consumed += lengths[k];
        }
        consumed += segOffset;
        if (bytes > consumed) {
            throw new IllegalArgumentException("revert by " + bytes + " with only " + consumed + " consumed");
        }
        count += bytes;
        while (bytes > 0) {
            if (bytes <= segOffset) {
                segOffset -= (int) bytes;
                break;
            }
            bytes -= segOffset;
            seg--;
            segOffset = lengths[seg];
        }
    }

    @Override
    public final void truncate(long count)
    {
        if (count < 0) {
            throw new IllegalArgumentException("negative count: " + count);
        }
        this.count = Math.min(this.count, count);
    }

    @Override
    public final void reexpand(long count)
    {
        long room = -segOffset;
        for (int k = seg; k < nr; k++) {
            room += lengths[k];
        }
        if (count < 0 || count > room) {
            throw new IllegalArgumentException("reexpand to " + count + " with room for " + room);
        }
        this.count = count;
    }

    @Override
    public final int copyToIter(ByteBuffer src)
    {
        int total = (int) Math.min(src.remaining(), count);
        int done = 0;
        while (done < total) {
            int n = Math.min(total - done, segmentLength(0));
            view(seg).put(base(seg) + segOffset, src, src.position() + done, n);
            done += n;
            advance(n);
        }
        src.position(src.position() + total);
        return total;
    }

    @Override
    public final int copyToIter(byte[] src, int offset, int length)
    {
        java.util.Objects.checkFromIndexSize(offset, length, src.length);
        int total = (int) Math.min(length, count);
        int done = 0;
        while (done < total) {
            int n = Math.min(total - done, segmentLength(0));
            view(seg).put(base(seg) + segOffset, src, offset + done, n);
            done += n;
            advance(n);
        }
        return total;
    }

    @Override
    public final int copyFromIter(ByteBuffer dst)
    {
        int total = (int) Math.min(dst.remaining(), count);
        int done = 0;
        while (done < total) {
            int n = Math.min(total - done, segmentLength(0));
            dst.put(dst.position() + done, view(seg), base(seg) + segOffset, n);
            done += n;
            advance(n);
        }
        dst.position(dst.position() + total);
        return total;
    }

    @Override
    public final int copyFromIter(byte[] dst, int offset, int length)
    {
        java.util.Objects.checkFromIndexSize(offset, length, dst.length);
        int total = (int) Math.min(length, count);
        int done = 0;
        while (done < total) {
            int n = Math.min(total - done, segmentLength(0));
            view(seg).get(base(seg) + segOffset, dst, offset + done, n);
            done += n;
            advance(n);
        }
        return total;
    }

    @Override
    public final long zero(long bytes)
    {
        long total = Math.min(Math.max(bytes, 0), count);
        long done = 0;
        while (done < total) {
            int n = (int) Math.min(Math.min(total - done, segmentLength(0)), ZEROS.length);
            view(seg).put(base(seg) + segOffset, ZEROS, 0, n);
            done += n;
            advance(n);
        }
        return total;
    }

    @Override
    public final long alignment()
    {
        long mask = 0;
        long left = count;
        for (int k = seg; k < nr && left > 0; k++) {
            int offset = k == seg ? segOffset : 0;
            long len = Math.min(lengths[k] - offset, left);
            if (len <= 0) {
                continue;
            }
            if (isDirect()) {
                mask |= address(k) + offset;
            }
            mask |= len;
            left -= len;
        }
        return mask;
    }

    @Override
    public final boolean isDirect()
    {
        return kind != Kind.IOVEC;
    }

    @Override
    public final long segmentAddress(int index)
    {
        if (!isDirect()) {
            throw new UnsupportedOperationException("heap segments have no native address");
        }
        int k = segmentIndex(index);
        return address(k) + (k == seg ? segOffset : 0);
    }

    @Override
    public final int segmentLength(int index)
    {
        int k = seg;
        long left = count;
        for (int i = 0; ; k++) {
            if (k >= nr || left <= 0) {
                if (i == index) {
                    return 0;
                }
                throw new IndexOutOfBoundsException("segment " + index + " of " + i);
            }
            int len = lengths[k] - (k == seg ? segOffset : 0);
            if (len == 0) {
                continue;
            }
            if (i == index) {
                return (int) Math.min(len, left);
            }
            left -= len;
            i++;
        }
    }

    @Override
    public final ByteBuffer segmentBuffer(int index)
    {
        int k = segmentIndex(index);
        int start = base(k) + (k == seg ? segOffset : 0);
        // A duplicate, never the view itself: a BVEC's view is the page's own buffer, which another
        // iterator over the same page (the chunks of one structured read) may position at the same time.
        ByteBuffer view = view(k).duplicate();
        view.clear();
        view.position(start);
        view.limit(start + segmentLength(index));
        return view;
    }

    /** Array index of the {@code index}-th non-empty segment from the current position. */
    private int segmentIndex(int index)
    {
        int k = seg;
        for (int i = 0; k < nr; k++) {
            int len = lengths[k] - (k == seg ? segOffset : 0);
            if (len == 0) {
                continue;
            }
            if (i == index) {
                return k;
            }
            i++;
        }
        throw new IndexOutOfBoundsException("segment " + index);
    }

    // Also when count is 0: a later reexpand() must not find the cursor on a used-up segment, where
    // the copy loops would address that segment's memory instead of the next one's.
    private void skipEmpty()
    {
        while (seg < nr && segOffset == lengths[seg]) {
            seg++;
            segOffset = 0;
        }
    }
}
