package dev.jloop.api;

/** Receives the extents of a file range, in ascending order; see {@link BackingFile#extents}. */
@FunctionalInterface
public interface ExtentSink
{
    /** The range reads as data (may contain zeros). */
    int DATA = 0;
    /** The range is not allocated (as NBD's {@code NBD_STATE_HOLE}). */
    int HOLE = 1;
    /** The range reads as zeros (as NBD's {@code NBD_STATE_ZERO}). */
    int ZERO = 2;

    /**
     * @param type {@link #DATA}, or an OR of {@link #HOLE} and {@link #ZERO}
     * @return whether to continue
     */
    boolean extent(long offset, long length, int type);
}
