package dev.jloop.api;

/** {@code fallocate(2)} mode bits, Linux values ({@code linux/falloc.h}). */
public final class Fallocate
{
    /** Do not change the file size. */
    public static final int KEEP_SIZE = 0x01;
    /** Deallocate the range; it reads back as zeros. Requires {@link #KEEP_SIZE}. */
    public static final int PUNCH_HOLE = 0x02;
    /** Zero the range, keeping (or allocating) its blocks. */
    public static final int ZERO_RANGE = 0x10;

    private Fallocate() {}
}
