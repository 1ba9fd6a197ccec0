package dev.jloop.api;

import static java.util.Objects.requireNonNull;

/**
 * What a {@link BlockDevice} does and how, as its frontends offer it. The device resolves it once
 * from its file's {@link Capabilities}, as nbdkit's server resolves {@code can_fua},
 * {@code can_zero} and {@code can_cache} into none, emulated or native: the loop device emulates
 * FUA with an fdatasync and zeroing with writes of zeros where the file cannot do them. Frontends
 * translate this into protocol flags (NBD) or device parameters (ublk) and derive nothing
 * themselves, so that every frontend offers the same device. Immutable.
 */
public final class DeviceCapabilities
{
    /** How the device does an operation. */
    public enum Support
    {
        /** Not offered: a request for it is refused. */
        NONE,
        /** Done by the device with other operations (FUA: the write, then an fdatasync). */
        EMULATED,
        /** Done by the file itself. */
        NATIVE,
    }

    private final boolean readOnly;
    private final boolean flush;
    private final Support fua;
    private final boolean trim;
    private final Support zero;
    private final boolean fastZero;
    private final Support cache;
    private final boolean extents;
    private final boolean multiConn;
    private final int logicalBlockSize;

    private DeviceCapabilities(Builder b)
    {
        this.readOnly = b.readOnly;
        this.flush = b.flush;
        this.fua = requireNonNull(b.fua, "fua is null");
        this.trim = b.trim;
        this.zero = requireNonNull(b.zero, "zero is null");
        this.fastZero = b.fastZero;
        this.cache = requireNonNull(b.cache, "cache is null");
        this.extents = b.extents;
        this.multiConn = b.multiConn;
        if (b.logicalBlockSize < 1 || Integer.bitCount(b.logicalBlockSize) != 1) {
            throw new IllegalArgumentException("logical block size must be a power of two: " + b.logicalBlockSize);
        }
        this.logicalBlockSize = b.logicalBlockSize;
        if (readOnly && (fua != Support.NONE || trim || zero != Support.NONE || fastZero)) {
            throw new IllegalArgumentException("a read-only device offers no writing operation: " + this);
        }
        if (fastZero && zero == Support.NONE) {
            throw new IllegalArgumentException("fast zero without zeroing: " + this);
        }
    }

    public static Builder builder()
    {
        return new Builder();
    }

    /** Writes, trims and zeroes are refused with EPERM. */
    public boolean readOnly()
    {
        return readOnly;
    }

    /** FLUSH makes every write completed before it durable. */
    public boolean flush()
    {
        return flush;
    }

    /** How a write, zeroing or trim with {@link Bio#REQ_FUA} is durable when it completes. */
    public Support fua()
    {
        return fua;
    }

    /** DISCARD is offered; it may deallocate, and is advisory. */
    public boolean trim()
    {
        return trim;
    }

    /** How WRITE_ZEROES is done: by the file (fallocate), or by writing zeros. */
    public Support zero()
    {
        return zero;
    }

    /** WRITE_ZEROES with {@link Bio#REQ_NOFALLBACK} fails at once where zeroing would be slower than a write. */
    public boolean fastZero()
    {
        return fastZero;
    }

    /** How CACHE (read-ahead) is done; {@link Support#NONE} where nothing could be gained, for example under O_DIRECT. */
    public Support cache()
    {
        return cache;
    }

    /** {@link BlockDevice#extents} tells data from holes. */
    public boolean extents()
    {
        return extents;
    }

    /** Several connections may share the device, and a FLUSH on any covers writes completed on all. */
    public boolean multiConn()
    {
        return multiConn;
    }

    /** The smallest unit of I/O without read-modify-write; smaller requests are bounced, not refused. */
    public int logicalBlockSize()
    {
        return logicalBlockSize;
    }

    @Override
    public String toString()
    {
        return "DeviceCapabilities{readOnly=" + readOnly + ", flush=" + flush + ", fua=" + fua + ", trim=" + trim
                + ", zero=" + zero + ", fastZero=" + fastZero + ", cache=" + cache + ", extents=" + extents
                + ", multiConn=" + multiConn + ", logicalBlockSize=" + logicalBlockSize + "}";
    }

    public static final class Builder
    {
        private boolean readOnly;
        private boolean flush;
        private Support fua = Support.NONE;
        private boolean trim;
        private Support zero = Support.NONE;
        private boolean fastZero;
        private Support cache = Support.NONE;
        private boolean extents;
        private boolean multiConn;
        private int logicalBlockSize = 1;

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

        public Builder fua(Support fua)
        {
            this.fua = fua;
            return this;
        }

        public Builder trim(boolean trim)
        {
            this.trim = trim;
            return this;
        }

        public Builder zero(Support zero)
        {
            this.zero = zero;
            return this;
        }

        public Builder fastZero(boolean fastZero)
        {
            this.fastZero = fastZero;
            return this;
        }

        public Builder cache(Support cache)
        {
            this.cache = cache;
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

        public Builder logicalBlockSize(int logicalBlockSize)
        {
            this.logicalBlockSize = logicalBlockSize;
            return this;
        }

        public DeviceCapabilities build()
        {
            return new DeviceCapabilities(this);
        }
    }
}
