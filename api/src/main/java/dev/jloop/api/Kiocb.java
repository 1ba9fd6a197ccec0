package dev.jloop.api;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

import static java.util.Objects.requireNonNull;

/**
 * One asynchronous operation on a {@link BackingFile}, after the kernel's {@code struct kiocb}: the
 * file, the position, flags, the memory ({@link IovIter}) and a completion callback.
 *
 * <p>Life cycle (the seed's {@code aio_kernel_*} calls): a kiocb is allocated from a pool
 * ({@code AioKernel.alloc()}), prepared with {@link #initRw} / {@link #initFsync} /
 * {@link #initFallocate} and {@link #initCallback}, and submitted. The backend operation either
 * returns a result at once, which the submitter completes, or returns {@link #QUEUED} and calls
 * {@link #complete(long)} later from any thread. Each submission completes exactly once; a second
 * completion throws {@link IllegalStateException}, since it is always a backend bug.
 *
 * <p>The kiocb is the one description of the operation: a backend takes what to do from it and
 * from nothing else.
 * <table>
 * <caption>What each operation reads</caption>
 * <tr><th>{@link #op()}</th><th>fields</th></tr>
 * <tr><td>READ, WRITE</td><td>{@link #pos()} (the kernel's {@code ki_pos}), {@link #iter()} (its
 *     {@code count()} bytes), {@link #flags()}</td></tr>
 * <tr><td>FSYNC</td><td>{@link #datasync()}, {@link #flags()} ({@link #IOCB_NOWAIT} only)</td></tr>
 * <tr><td>FALLOCATE</td><td>{@link #mode()}, {@link #pos()}, {@link #length()}, {@link #flags()} ({@link #IOCB_NOWAIT} only)</td></tr>
 * </table>
 * The backend must not change any of them: the only change it makes is to advance the iterator by
 * the bytes it transferred. So when a read or write completes, {@code pos()} is still where it
 * started, and the rest of a short transfer lies at {@code pos() + res} in what is left of the
 * iterator, which is where the submitter resubmits it (see {@link BackingFile}). {@link #file()} is
 * the file the submitter addressed, which a forwarding file passes on unchanged: a backend must not
 * expect it to be itself.
 *
 * <p>Ownership: from submission to completion the kiocb, its iterator and the iterator's memory
 * belong to the backend; nobody else may touch them. After completion they belong to the completion
 * callback.
 */
public final class Kiocb
{
    /**
     * Returned by a {@link BackingFile} operation that will complete later through
     * {@link #complete(long)}; the kernel's {@code -EIOCBQUEUED}.
     */
    public static final long QUEUED = -529;

    /** Write durably before completing (the kernel's {@code IOCB_DSYNC}); set for FUA writes. */
    public static final int IOCB_DSYNC = 1 << 4;

    /**
     * The submitter must not wait for another operation: the file may return {@code -EAGAIN} instead,
     * having done nothing (the kernel's {@code IOCB_NOWAIT}; see {@link BackingFile}). Any operation.
     */
    public static final int IOCB_NOWAIT = 1 << 7;

    /** What a kiocb asks the backing file to do. */
    public enum Op
    {
        READ, WRITE, FSYNC, FALLOCATE,
    }

    /** Hook through which the owning pool learns about completions (for in-flight accounting). */
    public interface Owner
    {
        void completed(Kiocb kiocb, long res);
    }

    private static final int IDLE = 0;
    private static final int SUBMITTED = 1;
    private static final VarHandle STATE;

    static {
        try {
            STATE = MethodHandles.lookup().findVarHandle(Kiocb.class, "state", int.class);
        }
        catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final Owner owner;
    @SuppressWarnings("unused") // accessed through STATE
    private volatile int state;

    private Op op;
    private BackingFile file;
    private long pos;
    private int flags;
    private IovIter iter;
    private int mode;
    private long length;
    private boolean datasync;
    private KiocbCompletion completion;
    private Object privateData;

    /** @param owner told of every completion, before the callback; may be {@code null} */
    public Kiocb(Owner owner)
    {
        this.owner = owner;
    }

    /** Prepares a READ or WRITE of {@code iter.count()} bytes at {@code pos} ({@code aio_kernel_init_rw}). */
    public Kiocb initRw(Op op, BackingFile file, IovIter iter, long pos, int flags)
    {
        if (op != Op.READ && op != Op.WRITE) {
            throw new IllegalArgumentException("not a read or write: " + op);
        }
        this.op = op;
        this.file = file;
        this.iter = iter;
        this.pos = pos;
        this.flags = flags;
        this.mode = 0;
        this.length = 0;
        this.datasync = false;
        return this;
    }

    /** Prepares an fsync; with {@code datasync} an {@code fdatasync(2)}. */
    public Kiocb initFsync(BackingFile file, boolean datasync)
    {
        this.op = Op.FSYNC;
        this.file = file;
        this.iter = null;
        this.pos = 0;
        this.length = 0;
        this.mode = 0;
        this.datasync = datasync;
        this.flags = 0;
        return this;
    }

    /** Prepares an {@code fallocate(2)} with a {@link Fallocate} mode over {@code [offset, offset + length)}. */
    public Kiocb initFallocate(BackingFile file, int mode, long offset, long length)
    {
        this.op = Op.FALLOCATE;
        this.file = file;
        this.iter = null;
        this.mode = mode;
        this.pos = offset;
        this.length = length;
        this.datasync = false;
        this.flags = 0;
        return this;
    }

    /**
     * A new kiocb for this one's operation on {@code file}: the same iterator, position, flags,
     * datasync, mode and length, completing into {@code completion} with this kiocb as its private
     * data. For a filter that hands an operation down and must see its result (see
     * {@link ForwardingBackingFile#passDown}); not pooled. The child advances the shared iterator.
     */
    public Kiocb child(BackingFile file, KiocbCompletion completion)
    {
        Kiocb child = new Kiocb(null);
        child.op = op;
        child.file = requireNonNull(file, "file is null");
        child.iter = iter;
        child.pos = pos;
        child.flags = flags;
        child.datasync = datasync;
        child.mode = mode;
        child.length = length;
        return child.initCallback(requireNonNull(completion, "completion is null"), this);
    }

    /**
     * Calls the operation this kiocb is prepared for on its file ({@code readIter},
     * {@code writeIter}, {@code fsync} or {@code fallocate}) and returns what that returns. The
     * submitter marks the kiocb submitted first and completes it with a result other than
     * {@link #QUEUED}.
     */
    public long callFile()
    {
        switch (op) {
            case READ:
                return file.readIter(this);
            case WRITE:
                return file.writeIter(this);
            case FSYNC:
                return file.fsync(this);
            case FALLOCATE:
                return file.fallocate(this);
            default:
                throw new IllegalStateException("kiocb not prepared: " + this);
        }
    }

    /**
     * Submits this kiocb to its file as a submitter must: marks it in flight, calls the file
     * ({@link #callFile()}), and completes it with a result the file returned at once. A
     * RuntimeException from the file completes it with {@code -EIO}. For the kiocbs a filter hands
     * down ({@link #child}); {@code AioKernel} does the same with its accounting.
     */
    public void submitToFile()
    {
        markSubmitted();
        long res;
        try {
            res = callFile();
        }
        catch (RuntimeException e) {
            res = inFlight() ? -Errno.EIO : QUEUED;
        }
        if (res != QUEUED) {
            complete(res);
        }
    }

    /** Sets the completion and a private value for it ({@code aio_kernel_init_callback}). */
    public Kiocb initCallback(KiocbCompletion completion, Object privateData)
    {
        this.completion = completion;
        this.privateData = privateData;
        return this;
    }

    /**
     * Marks the kiocb in flight. Called by the submitter (the AioKernel) just before handing it to
     * the backend; throws if it already is.
     */
    public void markSubmitted()
    {
        if (!STATE.compareAndSet(this, IDLE, SUBMITTED)) {
            throw new IllegalStateException("kiocb submitted while in flight");
        }
    }

    /**
     * Completes the operation: tells the owner, then the callback. Exactly once per submission.
     *
     * @param res bytes transferred (&gt;= 0) or {@code -errno}; never {@link #QUEUED}
     * @throws IllegalStateException on a second completion, or one without submission
     */
    public void complete(long res)
    {
        if (res == QUEUED) {
            throw new IllegalArgumentException("QUEUED is not a result");
        }
        if (!STATE.compareAndSet(this, SUBMITTED, IDLE)) {
            throw new IllegalStateException("kiocb completed twice (or never submitted): " + this);
        }
        if (owner != null) {
            owner.completed(this, res);
        }
        completion.complete(this, res);
    }

    /** Whether the kiocb is between submission and completion. */
    public boolean inFlight()
    {
        return state == SUBMITTED;
    }

    /** Clears every reference so a pooled kiocb keeps nothing alive. */
    public void reset()
    {
        if (inFlight()) {
            throw new IllegalStateException("kiocb reset while in flight");
        }
        op = null;
        file = null;
        iter = null;
        completion = null;
        privateData = null;
        pos = 0;
        length = 0;
        flags = 0;
        mode = 0;
        datasync = false;
    }

    public Op op()
    {
        return op;
    }

    public BackingFile file()
    {
        return file;
    }

    /**
     * File position of a read or write, where the transfer starts; start offset of an fallocate. Set
     * by the submitter only: a backend never moves it, also not along a short transfer.
     */
    public long pos()
    {
        return pos;
    }

    /** {@link #IOCB_DSYNC} and friends, for a read or write; 0 otherwise. */
    public int flags()
    {
        return flags;
    }

    /**
     * Sets the flags, for the submitter between submissions (to add or drop {@link #IOCB_NOWAIT});
     * never by the backend.
     */
    public void setFlags(int flags)
    {
        this.flags = flags;
    }

    /**
     * The memory of a read or write ({@code null} otherwise); the backend advances it by what it
     * transferred and changes it in no other way.
     */
    public IovIter iter()
    {
        return iter;
    }

    /** For an FSYNC: {@code fdatasync(2)} (data, and the metadata needed to read it) rather than {@code fsync(2)}. */
    public boolean datasync()
    {
        return datasync;
    }

    /** The {@link Fallocate} mode bits of an fallocate; 0 for every other operation. */
    public int mode()
    {
        return mode;
    }

    /** Length of an fallocate; 0 for every other operation. */
    public long length()
    {
        return length;
    }

    /** Value set with {@link #initCallback}; for the completion callback's use. */
    public Object privateData()
    {
        return privateData;
    }

    @Override
    public String toString()
    {
        return "Kiocb{" + op + " pos=" + pos + " count=" + (iter == null ? length : iter.count()) + " flags=" + flags + "}";
    }
}
