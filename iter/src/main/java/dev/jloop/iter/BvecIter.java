package dev.jloop.iter;

import java.nio.ByteBuffer;

/**
 * {@link dev.jloop.api.IovIter.Kind#BVEC}: segments are {@link Page}s of a {@link PagePool}, like
 * {@code struct bio_vec}s. Built once per pooled request and {@link #reset reset} for each use, so
 * the data path allocates nothing.
 *
 * <p>The iterator borrows the pages: their owner (the request) frees them, after the I/O completed.
 * While the iterator is in use it sets the position and limit of the pages' buffers.
 */
public final class BvecIter
        extends SegmentIter
{
    private Page[] pages = new Page[0];
    private int[] lengths = new int[0];

    public BvecIter()
    {
        super(Kind.BVEC);
    }

    /** Iterates over the first {@code count} bytes of {@code pages[0, nrPages)}. */
    public BvecIter reset(Direction direction, Page[] pages, int nrPages, long count)
    {
        if (lengths.length < nrPages) {
            lengths = new int[Math.max(nrPages, lengths.length * 2)];
        }
        for (int i = 0; i < nrPages; i++) {
            lengths[i] = pages[i].size();
        }
        this.pages = pages;
        reset(direction, lengths, nrPages, count);
        return this;
    }

    @Override
    ByteBuffer view(int k)
    {
        // Absolute gets and puts are bounded by the limit, which the page's previous owner may have left low.
        return pages[k].buffer().clear();
    }

    @Override
    int base(int k)
    {
        return 0;
    }

    @Override
    long address(int k)
    {
        return pages[k].address();
    }
}
