package dev.jloop.uring;

import java.util.ArrayDeque;

import static java.util.Objects.requireNonNull;

/**
 * A ring that the thread owning it (an event loop: an NBD connection, a ublk queue) lends to the
 * backing file it submits to, so that the file's operations go on the owner's ring: one
 * {@code io_uring_enter} then submits the owner's own operations and the file's, and reaps the
 * completions of both, with no other thread on the path.
 *
 * <p>Rules, written for the {@link RingBorrower} and the owner:
 * <ul>
 * <li>Only the owner thread touches the ring: the borrower writes SQEs only inside a call the owner
 *     made (a submission), and its completions run inside the owner's reap.</li>
 * <li>The borrower's SQEs carry {@link #BORROWED} in their user data; the owner hands every CQE that
 *     has it to {@link #complete}, which calls the borrower's handler with the bit cleared.</li>
 * <li>The owner keeps {@code reserved} SQEs for its own operations: {@link #prep} refuses the
 *     borrower the last ones. An operation that finds no room is held ({@link #hold}), never waited
 *     for: the owner writes the held ones at its next turn ({@link #prepareHeld}), before it enters.
 *     So a completion that resubmits never waits either.</li>
 * <li>The owner ends only after every borrowed operation has completed (it owns their completions),
 *     and a borrower never waits for one of its operations on a lent ring from the owner's thread.</li>
 * <li>Fixed buffers the owner registered on the ring ({@link #fixedBuffers}) stay registered and
 *     their memory mapped while the ring is lent; the borrower may then use READ_FIXED/WRITE_FIXED
 *     with them.</li>
 * </ul>
 */
public final class LentRing
{
    /** The user-data bit of the borrower's operations; the owner's own user data must not have it. */
    public static final long BORROWED = 1L << 62;

    private final Ring ring;
    private final Thread owner;
    private final int reserved;
    private final int fileIndex;
    private final FixedBuffers fixedBuffers;
    private final ArrayDeque<Held> held = new ArrayDeque<>();
    private CompletionHandler borrower;
    private int inFlight;

    /**
     * @param ring the owner's ring
     * @param owner the thread that alone submits on it and reaps it
     * @param reserved SQEs the borrower may not take (the owner's own operations)
     * @param fileIndex the borrower's file in the ring's registered files, or -1 to use its descriptor
     */
    public LentRing(Ring ring, Thread owner, int reserved, int fileIndex)
    {
        this(ring, owner, reserved, fileIndex, FixedBuffers.NONE);
    }

    /**
     * @param fixedBuffers the buffers registered on {@code ring}, which the borrower may use
     */
    public LentRing(Ring ring, Thread owner, int reserved, int fileIndex, FixedBuffers fixedBuffers)
    {
        this.ring = requireNonNull(ring, "ring is null");
        this.owner = requireNonNull(owner, "owner is null");
        if (reserved < 0 || reserved >= ring.sqEntries()) {
            throw new IllegalArgumentException("reserved SQEs " + reserved + " leave none of " + ring.sqEntries());
        }
        this.reserved = reserved;
        this.fileIndex = fileIndex;
        this.fixedBuffers = requireNonNull(fixedBuffers, "fixedBuffers is null");
    }

    /** An operation waiting for an SQE; {@link #prepare} writes it when there is room. */
    public interface Held
    {
        /** Writes the operation's SQE on {@code ring} through {@link LentRing#prep}; false when there is no room yet. */
        boolean prepare(LentRing ring);
    }

    /** Set by the borrower when it takes the ring: where the owner hands the borrower's CQEs. */
    public void borrowedBy(CompletionHandler handler)
    {
        this.borrower = requireNonNull(handler, "handler is null");
    }

    public Thread owner()
    {
        return owner;
    }

    /** Whether the calling thread may use the ring: the owner's thread, the one place the borrower may submit. */
    public boolean isOwnerThread()
    {
        return Thread.currentThread() == owner;
    }

    /** The borrower's file among the ring's registered files, or -1 (then its descriptor goes into the SQE). */
    public int fileIndex()
    {
        return fileIndex;
    }

    /** The fixed buffers registered on the ring, for the borrower's READ_FIXED/WRITE_FIXED; may be none. */
    public FixedBuffers fixedBuffers()
    {
        return fixedBuffers;
    }

    /**
     * Writes a borrowed operation's SQE, {@link #BORROWED} added to {@code userData}, if the owner's
     * reserve stays free; returns false otherwise, and the caller {@link #hold}s the operation.
     */
    public boolean prep(int opcode, int sqeFlags, int fd, long offset, long addr, int len, int opFlags, long userData, int bufIndex)
    {
        if (ring.sqSpace() <= reserved) {
            return false;
        }
        if (!ring.prep(opcode, sqeFlags, fd, offset, addr, len, opFlags, userData | BORROWED, bufIndex)) {
            return false;
        }
        inFlight++;
        return true;
    }

    /** Holds an operation that found no SQE, to be written at the owner's next turn, in order. */
    public void hold(Held operation)
    {
        held.add(requireNonNull(operation, "operation is null"));
    }

    /** Whether operations wait for an SQE. */
    public boolean hasHeld()
    {
        return !held.isEmpty();
    }

    /** Owner, before it enters: writes the held operations while there is room. Returns whether some are still held. */
    public boolean prepareHeld()
    {
        while (!held.isEmpty()) {
            if (!held.peek().prepare(this)) {
                return true;
            }
            held.poll();
        }
        return false;
    }

    /** Borrowed operations on the ring (SQE written, CQE not yet handled), not counting held ones. */
    public int inFlight()
    {
        return inFlight;
    }

    /** Owner, in its reap: a CQE whose user data has {@link #BORROWED}. */
    public void complete(long userData, int res, int flags)
    {
        inFlight--;
        borrower.handle(userData & ~BORROWED, res, flags);
    }

    public Ring ring()
    {
        return ring;
    }

    @Override
    public String toString()
    {
        return "LentRing{" + ring + ", owner=" + owner.getName() + ", inFlight=" + inFlight + ", held=" + held.size() + "}";
    }
}
