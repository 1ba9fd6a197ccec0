package dev.jloop.nbd;

/**
 * The data extent a connection learnt last from its export, so that a structured READ inside it
 * asks the device for no extents: on a file that query is two {@code lseek(2)} calls
 * ({@code SEEK_DATA}, {@code SEEK_HOLE}) per READ, which a copy of a whole image in 256 KiB reads
 * would make 8192 times per GiB. A READ that misses asks for the extents of {@link #AHEAD} bytes from
 * its offset, so one query covers the READs of a sequential copy that follow.
 *
 * <p>Only data is remembered, never a hole: a range remembered as data that became a hole since
 * (trimmed or zeroed through another connection, or by another program) is then read and sent as
 * an OFFSET_DATA chunk of the zeros it reads as, which is a correct answer, only not a sparse one. A
 * hole remembered after it was written would be a wrong answer. The connection's own TRIM and
 * WRITE_ZEROES drop what it knows.
 *
 * <p>Used by the connection's reader (the reader thread, or its io_uring loop) alone.
 */
final class KnownData
{
    /** How far past a READ that misses to ask for extents. */
    static final long AHEAD = 64L << 20;

    private long start;
    private long end;

    /** Whether {@code [offset, offset + length)} lies in the data extent known. */
    boolean covers(long offset, long length)
    {
        return start <= offset && offset + length <= end;
    }

    /** The device reported {@code [offset, offset + length)} as data. */
    void learn(long offset, long length)
    {
        start = offset;
        end = offset + length;
    }

    void forget()
    {
        start = 0;
        end = 0;
    }
}
