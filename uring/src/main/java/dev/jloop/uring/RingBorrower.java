package dev.jloop.uring;

/**
 * A backing file that can put its operations on a ring lent by the thread that submits them
 * ({@link LentRing}): the io_uring backend. An event loop that finds its device's file to be one
 * lends it its ring; any other file keeps its own way of doing I/O.
 */
public interface RingBorrower
{
    /** The descriptor the lender registers in its ring's files, so that the borrowed SQEs name a fixed file. */
    int fileDescriptor();

    /**
     * From now on the operations that the lender's thread submits to this file may go on
     * {@code ring}; their completions run in the lender's reap. Called on the lender's thread.
     * Returns false when the file does not take it (it is closing); then nothing changes.
     */
    boolean borrow(LentRing ring);

    /**
     * Ends {@link #borrow}: later operations from the lender's thread go the file's own way. Called
     * on the lender's thread once no borrowed operation is in flight or held.
     */
    void giveBack(LentRing ring);
}
