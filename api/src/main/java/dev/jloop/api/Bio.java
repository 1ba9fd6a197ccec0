package dev.jloop.api;

/**
 * One block request, after the kernel's {@code struct bio}: an operation on a byte range of a
 * {@link BlockDevice}, with the memory of a READ or WRITE as an {@link IovIter}.
 *
 * <p>Ownership: a frontend owns its bios (and pools them). From {@link BlockDevice#submit(Bio)} until
 * its end-io callback, the bio and its iterator belong to the device. The callback hands them back.
 */
public final class Bio
{
    public enum Op
    {
        READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES,
        /** Read-ahead: bring the range into the host's cache ({@code posix_fadvise(WILLNEED)}); advisory. */
        CACHE,
    }

    /** Durable before completion (forced unit access); on WRITE and WRITE_ZEROES. */
    public static final int REQ_FUA = 1;
    /** WRITE_ZEROES must keep the range allocated (no hole); NBD's NO_HOLE. */
    public static final int REQ_NOUNMAP = 1 << 1;
    /**
     * WRITE_ZEROES must fail at once with {@code -EOPNOTSUPP} where the device would fall back to
     * writing zeros (the kernel's {@code BLKDEV_ZERO_NOFALLBACK}; NBD's FAST_ZERO).
     */
    public static final int REQ_NOFALLBACK = 1 << 2;

    private Op op;
    private int flags;
    private long offset;
    private long length;
    private IovIter iter;
    private BioEndIo endIo;
    private Object privateData;
    private long issueTime;

    /**
     * Prepares the bio. For READ and WRITE, {@code iter.count()} must equal {@code length};
     * for other ops {@code iter} is {@code null}. FLUSH ignores offset and length.
     */
    public Bio init(Op op, long offset, long length, int flags, IovIter iter)
    {
        this.op = op;
        this.offset = offset;
        this.length = length;
        this.flags = flags;
        this.iter = iter;
        return this;
    }

    /** Sets the completion callback and a private value for it ({@code bi_end_io}, {@code bi_private}). */
    public Bio setEndIo(BioEndIo endIo, Object privateData)
    {
        this.endIo = endIo;
        this.privateData = privateData;
        return this;
    }

    /** Completes the bio; called by the device exactly once per submission. {@code error} is 0 or {@code -errno}. */
    public void endIo(int error)
    {
        endIo.endIo(this, error);
    }

    /**
     * When the device took this bio ({@link System#nanoTime()}), set by the device at submission for
     * its latency statistics (the kernel's {@code bi_issue}).
     */
    public long issueTime()
    {
        return issueTime;
    }

    public void setIssueTime(long nanos)
    {
        this.issueTime = nanos;
    }

    public Op op()
    {
        return op;
    }

    public int flags()
    {
        return flags;
    }

    public boolean fua()
    {
        return (flags & REQ_FUA) != 0;
    }

    public boolean noUnmap()
    {
        return (flags & REQ_NOUNMAP) != 0;
    }

    public boolean noFallback()
    {
        return (flags & REQ_NOFALLBACK) != 0;
    }

    public long offset()
    {
        return offset;
    }

    public long length()
    {
        return length;
    }

    public IovIter iter()
    {
        return iter;
    }

    public Object privateData()
    {
        return privateData;
    }

    @Override
    public String toString()
    {
        return "Bio{" + op + " offset=" + offset + " length=" + length + " flags=" + flags + "}";
    }
}
