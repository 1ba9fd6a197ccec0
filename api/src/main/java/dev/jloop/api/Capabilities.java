package dev.jloop.api;

import static java.util.Objects.requireNonNull;

/**
 * What a backing file (and so a block device) can do, declared instead of failing with "unsupported"
 * at run time (as nbdkit's {@code can_*} callbacks). Frontends derive protocol flags from this:
 * NBD transmission flags, ublk parameters. Immutable.
 */
public final class Capabilities
{
    private final boolean readOnly;
    private final boolean flush;
    private final boolean nativeFua;
    private final boolean trim;
    private final boolean zero;
    private final boolean extents;
    private final boolean multiConn;
    private final boolean cache;
    private final ThreadModel threadModel;
    private final int logicalBlockSize;
    private final int queueDepth;

    private Capabilities(Builder b)
    {
        this.readOnly = b.readOnly;
        this.flush = b.flush;
        this.nativeFua = b.nativeFua;
        this.trim = b.trim;
        this.zero = b.zero;
        this.extents = b.extents;
        this.multiConn = b.multiConn;
        this.cache = b.cache;
        this.threadModel = requireNonNull(b.threadModel, "threadModel is null");
        if (b.logicalBlockSize < 1 || Integer.bitCount(b.logicalBlockSize) != 1) {
            throw new IllegalArgumentException("logical block size must be a power of two: " + b.logicalBlockSize);
        }
        this.logicalBlockSize = b.logicalBlockSize;
        if (b.queueDepth < 0) {
            throw new IllegalArgumentException("queue depth must not be negative: " + b.queueDepth);
        }
        this.queueDepth = b.queueDepth;
    }

    public static Builder builder()
    {
        return new Builder();
    }

    public Builder toBuilder()
    {
        return new Builder()
                .readOnly(readOnly).flush(flush).nativeFua(nativeFua).trim(trim).zero(zero)
                .extents(extents).multiConn(multiConn).cache(cache).threadModel(threadModel)
                .logicalBlockSize(logicalBlockSize).queueDepth(queueDepth);
    }

    /** Writes, trims and zeroes are refused with EPERM. */
    public boolean readOnly()
    {
        return readOnly;
    }

    /** {@link BackingFile#fsync} makes data durable (false for a volatile, cache-less backend). */
    public boolean flush()
    {
        return flush;
    }

    /** Writes honour {@link Kiocb#IOCB_DSYNC} themselves; otherwise FUA is a write followed by an fsync. */
    public boolean nativeFua()
    {
        return nativeFua;
    }

    /** {@link Fallocate#PUNCH_HOLE} can work (it may still fail with EOPNOTSUPP on some file systems). */
    public boolean trim()
    {
        return trim;
    }

    /** {@link Fallocate#ZERO_RANGE} / punch-hole zeroing can work; zeroing is always possible by writing. */
    public boolean zero()
    {
        return zero;
    }

    /**
     * {@link BackingFile#extents} reports the file's holes. Without it the loop device never asks the
     * file and reports every range as data.
     */
    public boolean extents()
    {
        return extents;
    }

    /** Several connections may use the file at once and see one another's flushed writes. */
    public boolean multiConn()
    {
        return multiConn;
    }

    /** {@link BackingFile#cache} starts a read-ahead into the host's page cache. */
    public boolean cache()
    {
        return cache;
    }

    public ThreadModel threadModel()
    {
        return threadModel;
    }

    /**
     * Smallest unit of I/O the file handles without read-modify-write: 1 for buffered files, 4096 for
     * O_DIRECT. Offsets and lengths need not be aligned to it (the backend bounces), but should be.
     */
    public int logicalBlockSize()
    {
        return logicalBlockSize;
    }

    /**
     * How many operations the file takes at once without making the submitter wait (its ring slots or
     * queue), or 0 when it never waits. The loop device keeps no more than this in flight and holds the
     * rest in its own queue, so that no submitter, and above all no frontend thread, blocks on the
     * file's capacity.
     */
    public int queueDepth()
    {
        return queueDepth;
    }

    @Override
    public String toString()
    {
        return "Capabilities{readOnly=" + readOnly + ", flush=" + flush + ", nativeFua=" + nativeFua
                + ", trim=" + trim + ", zero=" + zero + ", extents=" + extents + ", multiConn=" + multiConn
                + ", cache=" + cache + ", threadModel=" + threadModel + ", logicalBlockSize=" + logicalBlockSize + ", queueDepth=" + queueDepth + "}";
    }

    public static final class Builder
    {
        private boolean readOnly;
        private boolean flush;
        private boolean nativeFua;
        private boolean trim;
        private boolean zero;
        private boolean extents;
        private boolean multiConn;
        private boolean cache;
        private ThreadModel threadModel = ThreadModel.PARALLEL;
        private int logicalBlockSize = 1;
        private int queueDepth;

        private Builder() {}

        public Builder readOnly(boolean readOnly)
        {
            this.readOnly = readOnly;
            return this;
        }

        public Builder flush(boolean flush)
        {
            this.flush = flush;
            return this;
        }

        public Builder nativeFua(boolean nativeFua)
        {
            this.nativeFua = nativeFua;
            return this;
        }

        public Builder trim(boolean trim)
        {
            this.trim = trim;
            return this;
        }

        public Builder zero(boolean zero)
        {
            this.zero = zero;
            return this;
        }

        public Builder extents(boolean extents)
        {
            this.extents = extents;
            return this;
        }

        public Builder multiConn(boolean multiConn)
        {
            this.multiConn = multiConn;
            return this;
        }

        public Builder cache(boolean cache)
        {
            this.cache = cache;
            return this;
        }

        public Builder threadModel(ThreadModel threadModel)
        {
            this.threadModel = threadModel;
            return this;
        }

        public Builder logicalBlockSize(int logicalBlockSize)
        {
            this.logicalBlockSize = logicalBlockSize;
            return this;
        }

        public Builder queueDepth(int queueDepth)
        {
            this.queueDepth = queueDepth;
            return this;
        }

        public Capabilities build()
        {
            return new Capabilities(this);
        }
    }
}
