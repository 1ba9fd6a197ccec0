package dev.jloop.backend.iouring;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.posix.BlockRangeLock;
import dev.jloop.posix.BounceIo;
import dev.jloop.posix.Extents;
import dev.jloop.posix.FileDescriptor;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.FixedBuffers;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.Ring;
import dev.jloop.uring.RingBorrower;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} on io_uring: every read, write, fsync and fallocate is an SQE on one ring per
 * file, with the file registered as fixed file 0.
 *
 * <p>Threading, the simplest design that is correct with many submitting threads: any thread writes
 * SQEs into the ring under {@link #lock}, a short lock held only while an SQE is written and the SQ
 * tail published (never around a wait for I/O), then calls {@code io_uring_enter} to submit, outside
 * the lock (the kernel serialises submitters and clamps {@code to_submit} to what is pending, so any
 * thread's enter submits everyone's SQEs). Inside a {@link #plug()} the enter is deferred to the
 * outermost {@link #unplug()}: one enter per batch. After its enter a submitter reaps, in its own
 * thread, what completed during the enter (page-cache hits complete inside it), so those need no
 * hand-off; the CQ side is held by one reaper at a time ({@link #reapLock}; a completion that submits
 * again does not reap from inside itself). One completion thread waits in
 * {@code io_uring_enter(GETEVENTS)} for the rest (device I/O), reaps CQEs and calls
 * {@link Kiocb#complete(long)}; it allocates nothing and waits for nothing but CQEs (it takes
 * {@link #lock} only to write the SQE that retries an {@code -EAGAIN} or to return a slot). When its
 * wakeups find nothing left to reap and no slot is busy it parks in Java, since a thread waiting in
 * the kernel is woken for every CQE; a submitter that leaves operations in flight unparks it. The ring
 * is therefore not set up with SINGLE_ISSUER.
 *
 * <p>In flight is bounded by a fixed array of slots ({@code queue-depth}, default
 * {@link BackendConfig#queueDepth()}); each slot owns its kiocb between submission and completion
 * and a preallocated iovec array for READV/WRITEV. A submitter that finds no free slot submits what is
 * pending and waits. The SQ has room for every slot plus the control SQEs, so writing an SQE never
 * waits; the CQ is twice the SQ, so it never overflows (the ring flushes an overflow anyway).
 *
 * <p>Data paths: a direct iterator (KVEC, BVEC) aligned as the file needs goes straight to the ring:
 * READ/WRITE for one segment (READ_FIXED/WRITE_FIXED when it lies in buffers given to
 * {@link #registerBuffers}), READV/WRITEV for several (at most {@value #IOV_PER_SLOT} per SQE; a longer
 * vector is a short transfer). Buffered (not {@code O_DIRECT}) writes without FUA of up to 64 KiB
 * from a connection's loop, up to 256 KiB from any other thread, are a {@code pwrite} in the
 * submitting thread instead (see {@link #writeBuffered}). One operation is one
 * SQE, and its CQE's result is the operation's: a short read or write completes as such, with the
 * iterator advanced by what the kernel transferred, and the loop device resubmits the rest (the one
 * level of resubmission {@link BackingFile} allows); a read returning 0 is end of file. An
 * {@code -EAGAIN} or {@code -EINTR} is no transfer at all: the same SQE goes to the ring again. Heap
 * (IOVEC) iterators and, under
 * {@code O_DIRECT}, unaligned requests are bounced synchronously in the submitting thread through a
 * per-thread aligned buffer with {@code pread}/{@code pwrite} ({@link BounceIo}: read-modify-write of
 * partial blocks under an exclusive {@link BlockRangeLock}; aligned {@code O_DIRECT} writes on the ring
 * hold their blocks shared until completion).
 *
 * <p>A ring lent by the submitting thread ({@link RingBorrower}: an NBD connection's event loop, a ublk queue)
 * takes that thread's operations instead of the file's own ring: the SQE goes on the lender's ring,
 * which the lender submits with its own operations, and its CQE is handled in the lender's reap, so
 * the operation costs no enter of its own and no wake-up of the completion thread. The slot is the
 * same (so {@code queue-depth} bounds both kinds together), and so are retries and results; an
 * operation that finds the lender's SQ full is held and written at the lender's next turn. Under
 * {@code O_DIRECT}, writes on a lent ring hold their blocks (shared) until the lender reaps them, so
 * the lender's thread must never wait for a block range: it would wait for itself. With
 * {@link Kiocb#IOCB_NOWAIT} (what the loop device sets on a frontend thread's kiocbs) it only tries:
 * a write whose blocks a read-modify-write or a fallocate holds, and a read-modify-write or fallocate
 * whose blocks anything holds, return {@code -EAGAIN}, and the loop device's worker submits them
 * again, free to wait. Without the flag, {@code O_DIRECT} writes stay on the file's own ring. Under
 * {@code O_DIRECT} fallocates always do: they hold their blocks exclusively until they complete, and
 * a lender may still wait for an exclusive hold (a write that found no free slot takes the file's own
 * way), so no exclusive hold may depend on a lender's reap. On a lent ring a single-segment request in
 * a fixed buffer the lender registered ({@link LentRing#fixedBuffers}) goes as READ_FIXED/WRITE_FIXED,
 * as on the file's own ring.
 *
 * <p>{@link #close()} cancels what is in flight ({@code IORING_OP_ASYNC_CANCEL} of any request), waits
 * for every CQE (the kernel may still be using the memory until then) and completes each such kiocb
 * exactly once with {@code -ECANCELED}; then it stops the completion thread and closes the ring and file.
 */
public final class IoUringBackingFile
        implements BackingFile, RingBorrower
{
    private static final Logger log = LoggerFactory.getLogger(IoUringBackingFile.class);

    static final int IOV_PER_SLOT = 64;
    private static final int BLOCK = BounceIo.DIRECT_BLOCK_SIZE;
    private static final int BOUNCE_SIZE = 256 * 1024;
    /**
     * Buffered writes up to this size are a pwrite in a connection loop's thread (which has lent its ring
     * to the file) while fewer loops than processors lend theirs; larger ones overlap with the loop on
     * the ring, where it reaps them itself: 256 KiB writes at QD8 on one connection went a tenth faster
     * on the ring, and 1 MiB at QD4 too.
     */
    private static final long LOOP_INLINE_WRITE_MAX = 64 * 1024;
    /**
     * Buffered writes up to this size are a pwrite in any other submitting thread (a TLS connection's
     * reader, the device's worker), whose ring write would also be completed by the file's completion
     * thread, one more hand-off: 256 KiB (nbdcopy's requests) inline took a quarter off the server's CPU
     * writing in over TLS (docs/benchmarks.md, "TLS on BoringSSL"). So are they in a loop's thread once
     * at least as many loops as processors lend their rings: the loops keep every core busy themselves,
     * and a hand-off to an io-wq worker only adds switches (nbdcopy writing in over 2 connections on 2
     * processors: up to a quarter less server CPU, docs/benchmarks.md, "Inline writes in busy loops").
     */
    private static final long INLINE_WRITE_MAX = 256 * 1024;
    private static final int PROCESSORS = Runtime.getRuntime().availableProcessors();
    /** {@link #progress}: the operation is on the ring again, as it was. */
    private static final long RETRIED = Long.MIN_VALUE;
    /** {@link #queueLent}: no slot free now; the operation goes the file's own way. */
    private static final long NO_SLOT = Long.MIN_VALUE + 1;
    private static final long WAKEUP = -1L;
    private static final long CANCEL = -2L;
    private static final int FIXED_FILE = 0;
    private static final int NO_HOLD = -1;

    private static final int OP_READ = 0;
    private static final int OP_WRITE = 1;
    private static final int OP_FSYNC = 2;
    private static final int OP_FALLOCATE = 3;

    private final FileDescriptor fd;
    private final boolean readOnly;
    private final boolean direct;
    private final boolean sqpoll;
    private final Capabilities capabilities;
    private final Ring ring;
    private final Pointer iovecs;
    private final Slot[] slots;
    private final int[] freeSlots;
    private int nrFree;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition slotFreed = lock.newCondition();
    /** The CQ side of the ring: held by whichever thread reaps (the completion thread, or a submitter inline). */
    private final ReentrantLock reapLock = new ReentrantLock();
    private final ThreadLocal<Plug> plugs = ThreadLocal.withInitial(Plug::new);
    /** The ring the current thread lent this file ({@link #borrow}), or null. */
    private final ThreadLocal<LentRing> lentRings = new ThreadLocal<>();
    private final CompletionHandler lentHandler = this::handle;
    /** Threads that lent this file their rings now. */
    private final AtomicInteger lenders = new AtomicInteger();
    private final ThreadLocal<SyncBounce> bounces;
    /** Aligned {@code O_DIRECT} writes on the ring hold their blocks shared, read-modify-writes and fallocates exclusively. */
    private final BlockRangeLock blockLock;
    private final Thread completionThread;
    private final CompletionHandler handler = this::handle;
    /** What a thread about to wait for another's I/O runs first: it must not reap (it may hold a monitor). */
    private final Runnable submitPending = this::submitAndWake;

    private volatile boolean closing;
    private boolean closed;
    private volatile boolean stopped;
    /** Set while handling a batch: retries were written, enter after it. Under {@link #reapLock}. */
    private boolean retried;
    /** The completion thread waits in {@link LockSupport#park}, not in the kernel. */
    private volatile boolean completionThreadParked;
    /** Slots in use (written under {@link #lock}), read without it by the completion thread before it parks. */
    private volatile int busySlots;
    /** A submitter gave up on {@code -EAGAIN}/{@code -EBUSY}: the completion thread submits after its next reap. */
    private volatile boolean submitBacklog;
    /** The errno with which {@code io_uring_enter} failed for good; 0 while the ring submits. */
    private volatile int submitErrno;

    private FixedBuffers fixedBuffers = FixedBuffers.NONE;
    private long fixedSubmissions;
    /** Counted by the lenders' threads, without {@link #lock}. */
    private final LongAdder lentFixedSubmissions = new LongAdder();

    IoUringBackingFile(BackendConfig config, boolean sqpoll)
            throws IOException
    {
        requireNonNull(config, "config is null");
        this.readOnly = config.readOnly();
        this.direct = config.direct();
        int queueDepth = config.queueDepth();
        this.sqpoll = sqpoll;

        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                .nativeFua(true)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .cache(!direct)
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(direct ? BLOCK : 1)
                .queueDepth(queueDepth)
                .build();

        FileDescriptor file = FileDescriptor.openBackingFile(config.path(), readOnly, direct);
        Ring opened = null;
        try {
            // every slot's SQE, plus a wakeup and a cancel
            opened = Ring.builder(queueDepth + 2)
                    .flags(sqpoll ? IoUring.SETUP_SQPOLL : 0)
                    .sqThreadIdleMillis(sqpoll ? 100 : 0)
                    .open();
            opened.registerFiles(file.intValue());
        }
        catch (NativeIoException e) {
            if (opened != null) {
                opened.close();
            }
            file.close();
            throw new IOException("io_uring for " + config.path() + ": " + e.getMessage(), e);
        }
        this.fd = file;
        this.ring = opened;
        this.iovecs = Memory.allocateDirect(jnr.ffi.Runtime.getSystemRuntime(), 16L * IOV_PER_SLOT * queueDepth, true);
        this.slots = new Slot[queueDepth];
        this.freeSlots = new int[queueDepth];
        for (int i = 0; i < queueDepth; i++) {
            Slot slot = new Slot(i, iovecs.address() + 16L * IOV_PER_SLOT * i);
            slot.held = ring -> prepareLent(slot, ring);
            slots[i] = slot;
            freeSlots[i] = queueDepth - 1 - i;
        }
        this.nrFree = queueDepth;
        this.blockLock = new BlockRangeLock(queueDepth);
        this.bounces = ThreadLocal.withInitial(SyncBounce::new);
        this.completionThread = new Thread(this::completionLoop, "jloop-uring-" + config.path().getFileName());
        completionThread.setDaemon(true);
        completionThread.start();
    }


    // ---- BackingFile

    @Override
    public long readIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (pos < 0) {
            return -Errno.EINVAL;
        }
        if (closing) {
            return -Errno.ESHUTDOWN;
        }
        if (iter.count() == 0) {
            return 0;
        }
        if (!goesStraight(iter, pos)) {
            return bounces.get().readIter(iter, pos);
        }
        LentRing lent = lentRings.get();
        if (lent != null) {
            long res = queueLent(lent, kiocb, OP_READ, 0, NO_HOLD);
            if (res != NO_SLOT) {
                return res;
            }
        }
        return queueRw(kiocb, OP_READ, iter, pos, 0);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        if (readOnly) {
            return -Errno.EPERM;
        }
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (pos < 0) {
            return -Errno.EINVAL;
        }
        if (closing) {
            return -Errno.ESHUTDOWN;
        }
        if (iter.count() == 0) {
            return 0;
        }
        boolean dsync = (kiocb.flags() & Kiocb.IOCB_DSYNC) != 0;
        LentRing lent = lentRings.get();
        if (!direct && !dsync && iter.isDirect() && iter.count() <= (lent != null && lenders.get() < PROCESSORS ? LOOP_INLINE_WRITE_MAX : INLINE_WRITE_MAX)) {
            return writeBuffered(iter, pos);
        }
        boolean nowait = mustNotWait(lent, kiocb);
        if (!goesStraight(iter, pos)) {
            long res = bounces.get().writeIter(iter, pos, nowait);
            if (res > 0 && dsync) {
                int sync = Posix.fdatasync(fd.intValue());
                return sync < 0 ? sync : res;
            }
            return res;
        }
        int rwFlags = dsync ? IoUring.RWF_DSYNC : 0;
        if (lent != null && (!direct || nowait)) {
            int hold = NO_HOLD;
            if (direct) {
                hold = blockLock.tryLock(pos / BLOCK, (pos + iter.count() - 1) / BLOCK, false);
                if (hold < 0) {
                    return -Errno.EAGAIN;
                }
            }
            long res = queueLent(lent, kiocb, OP_WRITE, rwFlags, hold);
            if (res != NO_SLOT) {
                return res;
            }
        }
        return queueRw(kiocb, OP_WRITE, iter, pos, rwFlags);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        if (closing) {
            return -Errno.ESHUTDOWN;
        }
        int fsyncFlags = kiocb.datasync() ? IoUring.FSYNC_DATASYNC : 0;
        LentRing lent = lentRings.get();
        if (lent != null) {
            long res = queueLent(lent, kiocb, OP_FSYNC, fsyncFlags, NO_HOLD);
            if (res != NO_SLOT) {
                return res;
            }
        }
        Slot slot = acquireSlot();
        if (slot == null) {
            return -Errno.ESHUTDOWN;
        }
        slot.init(kiocb, OP_FSYNC, fsyncFlags);
        return queue(slot);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        if (readOnly) {
            return -Errno.EPERM;
        }
        long offset = kiocb.pos();
        long length = kiocb.length();
        if (offset < 0 || length <= 0) {
            return length == 0 && offset >= 0 ? 0 : -Errno.EINVAL;
        }
        if (closing) {
            return -Errno.ESHUTDOWN;
        }
        LentRing lent = lentRings.get();
        if (lent != null && !direct) {
            long res = queueLent(lent, kiocb, OP_FALLOCATE, kiocb.mode(), NO_HOLD);
            if (res != NO_SLOT) {
                return res;
            }
        }
        // The kernel zeroes partial blocks through the page cache: keep read-modify-writes off them.
        // It holds them until it completes on this file's ring, whose completion thread no lender waits for.
        int hold = NO_HOLD;
        if (direct) {
            long firstBlock = offset / BLOCK;
            long lastBlock = (offset + length - 1) / BLOCK;
            if (mustNotWait(lent, kiocb)) {
                hold = blockLock.tryLock(firstBlock, lastBlock, true);
                if (hold < 0) {
                    return -Errno.EAGAIN;
                }
            }
            else {
                hold = blockLock.lock(firstBlock, lastBlock, true, submitPending);
            }
        }
        Slot slot = acquireSlot();
        if (slot == null) {
            unlockBlocks(hold);
            return -Errno.ESHUTDOWN;
        }
        slot.init(kiocb, OP_FALLOCATE, kiocb.mode());
        slot.blockHold = hold;
        return queue(slot);
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        return Extents.report(fd.intValue(), offset, length, sink);
    }

    /**
     * Read-ahead through {@code posix_fadvise(WILLNEED)} on the file's descriptor: it only starts
     * reads, so a ring round trip would buy nothing.
     */
    @Override
    public long cache(long offset, long length)
    {
        return Posix.fadvise(fd.intValue(), offset, length, Posix.POSIX_FADV_WILLNEED);
    }

    @Override
    public long size()
    {
        return Posix.size(fd.intValue());
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void plug()
    {
        plugs.get().depth++;
    }

    @Override
    public void unplug()
    {
        Plug plug = plugs.get();
        if (plug.depth == 0) {
            throw new IllegalStateException("unplug without plug");
        }
        if (--plug.depth == 0 && plug.pending) {
            plug.pending = false;
            if (!closing) {
                submitPending();
            }
        }
    }

    /** Registers the regions as fixed buffers; where the kernel refuses (RLIMIT_MEMLOCK), plain reads and writes serve. */
    @Override
    public void registerMemory(List<ByteBuffer> regions)
    {
        try {
            registerBuffers(regions);
        }
        catch (IOException e) {
            log.warn("io_uring fixed buffers not used: {}", e.getMessage());
        }
    }

    /**
     * Registers {@code buffers} (for example {@code PagePool.slabs()}) as io_uring fixed buffers:
     * afterwards a single-segment request that lies inside one of them is a READ_FIXED/WRITE_FIXED,
     * which saves the kernel pinning its pages per request. Replaces an earlier registration. The
     * buffers must stay reachable while this file is open.
     */
    public void registerBuffers(List<ByteBuffer> buffers)
            throws IOException
    {
        long[] addresses = new long[buffers.size()];
        long[] lengths = new long[buffers.size()];
        for (int i = 0; i < addresses.length; i++) {
            ByteBuffer buffer = buffers.get(i);
            addresses[i] = jnr.ffi.Runtime.getSystemRuntime().getMemoryManager().newPointer(buffer).address();
            lengths[i] = buffer.capacity();
        }
        lock.lock();
        try {
            if (!fixedBuffers.isEmpty()) {
                ring.unregisterBuffers();
                fixedBuffers = FixedBuffers.NONE;
            }
            if (addresses.length == 0) {
                return;
            }
            ring.registerBuffers(addresses, lengths);
            fixedBuffers = new FixedBuffers(addresses, lengths);
        }
        finally {
            lock.unlock();
        }
    }

    /** READ_FIXED/WRITE_FIXED SQEs written so far, on this file's ring and on lent ones (statistics, tests). */
    public long fixedSubmissions()
    {
        lock.lock();
        try {
            return fixedSubmissions + lentFixedSubmissions.sum();
        }
        finally {
            lock.unlock();
        }
    }

    // ---- RingBorrower

    @Override
    public int fileDescriptor()
    {
        return fd.intValue();
    }

    @Override
    public boolean borrow(LentRing ring)
    {
        if (!ring.isOwnerThread()) {
            throw new IllegalStateException("a ring is lent by the thread that owns it: " + ring);
        }
        if (closing) {
            return false;
        }
        ring.borrowedBy(lentHandler);
        if (lentRings.get() == null) {
            lenders.incrementAndGet();
        }
        lentRings.set(ring);
        return true;
    }

    @Override
    public void giveBack(LentRing ring)
    {
        if (lentRings.get() == ring) {
            lentRings.remove();
            lenders.decrementAndGet();
        }
    }

    /** The ring's descriptor, for tests that break it. */
    int ringFd()
    {
        return ring.fd();
    }

    /** {@code io_uring_enter} calls that submitted SQEs so far (statistics, tests of batching). */
    public long submitCalls()
    {
        return ring.submitCalls();
    }

    // ---- submission

    /**
     * Whether the calling thread must not wait for a block range: it lent this file its ring (a write
     * on that ring may hold the range, and only this thread reaps it) and its submitter can take
     * {@code -EAGAIN} ({@link Kiocb#IOCB_NOWAIT}).
     */
    private static boolean mustNotWait(LentRing lent, Kiocb kiocb)
    {
        return lent != null && (kiocb.flags() & Kiocb.IOCB_NOWAIT) != 0;
    }

    private boolean goesStraight(IovIter iter, long pos)
    {
        return iter.isDirect() && (!direct || ((pos | iter.alignment()) & (BLOCK - 1)) == 0);
    }

    /**
     * A write of up to {@link #LOOP_INLINE_WRITE_MAX} or {@link #INLINE_WRITE_MAX} into the page cache,
     * done here with {@code pwrite}. ext4 and most other file systems cannot take a buffered write
     * without blocking ({@code FMODE_BUF_WASYNC}), so io_uring would hand each one to an io-wq worker,
     * serialised per file: a thread hand-off and a wakeup to save a copy of some microseconds (tens for
     * 256 KiB). Larger writes stay on the ring, where the worker's copy overlaps with the submitter's
     * next request; durable (FUA) writes too, where their fdatasync waits.
     */
    private long writeBuffered(IovIter iter, long pos)
    {
        long done = 0;
        int nrSegs = iter.nrSegs();
        for (int i = 0; i < nrSegs; i++) {
            long address = iter.segmentAddress(i);
            int length = iter.segmentLength(i);
            long n = Posix.pwrite(fd.intValue(), address, length, pos + done);
            if (n == -Errno.EINTR) {
                i--;
                continue;
            }
            if (n < 0) {
                return done > 0 ? advanced(iter, done) : n;
            }
            done += n;
            if (n < length) {
                break;
            }
        }
        return done > 0 ? advanced(iter, done) : -Errno.EIO;
    }

    private static long advanced(IovIter iter, long bytes)
    {
        iter.advance(bytes);
        return bytes;
    }

    private long queueRw(Kiocb kiocb, int op, IovIter iter, long pos, int rwFlags)
    {
        int hold = direct && op == OP_WRITE ? blockLock.lock(pos / BLOCK, (pos + iter.count() - 1) / BLOCK, false, submitPending) : NO_HOLD;
        Slot slot = acquireSlot();
        if (slot == null) {
            unlockBlocks(hold);
            return -Errno.ESHUTDOWN;
        }
        slot.init(kiocb, op, rwFlags);
        slot.blockHold = hold;
        return queue(slot);
    }

    /**
     * Puts the operation on the ring the calling thread lent: its SQE now, or at the lender's next
     * turn when the lender's SQ has no room. {@link #NO_SLOT} when no slot is free (the loop device
     * never submits more than the slots, but another submitter may hold them): the caller then takes
     * the file's own way, which may wait for one. {@code blockHold} goes with the operation, and is
     * released here when the operation is not queued.
     */
    private long queueLent(LentRing lent, Kiocb kiocb, int op, int flags, int blockHold)
    {
        Slot slot;
        lock.lock();
        try {
            if (closing || submitErrno != 0) {
                unlockBlocks(blockHold);
                return closing ? -Errno.ESHUTDOWN : -submitErrno;
            }
            if (nrFree == 0) {
                unlockBlocks(blockHold);
                return NO_SLOT;
            }
            busySlots = slots.length - nrFree + 1;
            slot = slots[freeSlots[--nrFree]];
        }
        finally {
            lock.unlock();
        }
        slot.init(kiocb, op, flags);
        slot.blockHold = blockHold;
        slot.lent = lent;
        if (!prepareLent(slot, lent)) {
            lent.hold(slot.held);
        }
        return Kiocb.QUEUED;
    }

    /** Writes the slot's SQE on the lender's ring; false when it has no room. Lender's thread, slot owned. */
    private boolean prepareLent(Slot slot, LentRing lent)
    {
        boolean fixed = lent.fileIndex() >= 0;
        int file = fixed ? lent.fileIndex() : fd.intValue();
        int sqeFlags = fixed ? IoUring.IOSQE_FIXED_FILE : 0;
        long userData = slot.index;
        Kiocb kiocb = slot.kiocb;
        switch (slot.op) {
            case OP_FSYNC:
                return lent.prep(IoUring.OP_FSYNC, sqeFlags, file, 0, 0, 0, slot.rwFlags, userData, 0);
            case OP_FALLOCATE:
                // the length travels in addr and the mode in len (io_uring_enter(2))
                return lent.prep(IoUring.OP_FALLOCATE, sqeFlags, file, kiocb.pos(), kiocb.length(), slot.rwFlags, 0, userData, 0);
            default:
                break;
        }
        IovIter iter = kiocb.iter();
        boolean write = slot.op == OP_WRITE;
        int nrSegs = Math.min(iter.nrSegs(), IOV_PER_SLOT);
        if (nrSegs == 1) {
            long address = iter.segmentAddress(0);
            int length = iter.segmentLength(0);
            int bufIndex = lent.fixedBuffers().indexOf(address, length);
            if (bufIndex >= 0) {
                lentFixedSubmissions.increment();
                return lent.prep(write ? IoUring.OP_WRITE_FIXED : IoUring.OP_READ_FIXED, sqeFlags, file, kiocb.pos(),
                        address, length, slot.rwFlags, userData, bufIndex);
            }
            return lent.prep(write ? IoUring.OP_WRITE : IoUring.OP_READ, sqeFlags, file, kiocb.pos(),
                    address, length, slot.rwFlags, userData, 0);
        }
        writeIovecs(slot, iter, nrSegs);
        return lent.prep(write ? IoUring.OP_WRITEV : IoUring.OP_READV, sqeFlags, file, kiocb.pos(),
                slot.iovecAddress, nrSegs, slot.rwFlags, userData, 0);
    }

    /** A free slot, waiting (after submitting what is pending) while there is none; {@code null} once closing. */
    private Slot acquireSlot()
    {
        lock.lock();
        try {
            while (nrFree == 0 && !closing) {
                // The slots may be held by SQEs batched behind a plug, this thread's or another's.
                submitAndWake();
                slotFreed.awaitUninterruptibly();
            }
            if (closing) {
                return null;
            }
            busySlots = slots.length - nrFree + 1;
            return slots[freeSlots[--nrFree]];
        }
        finally {
            lock.unlock();
        }
    }

    private long queue(Slot slot)
    {
        lock.lock();
        try {
            if (closing || submitErrno != 0) {
                // close() has started (it waits for busy slots only), or the ring cannot submit: give it back unused.
                release(slot);
                return closing ? -Errno.ESHUTDOWN : -submitErrno;
            }
            prepare(slot);
            ring.flush();
        }
        finally {
            lock.unlock();
        }
        Plug plug = plugs.get();
        if (plug.depth > 0) {
            plug.pending = true;
        }
        else {
            submitPending();
        }
        return Kiocb.QUEUED;
    }

    /** Writes the SQE of the slot's operation, as its kiocb describes it. Under {@link #lock}. */
    private void prepare(Slot slot)
    {
        boolean ok;
        long userData = slot.index;
        switch (slot.op) {
            case OP_FSYNC:
                ok = ring.prepFsync(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, slot.rwFlags, userData);
                break;
            case OP_FALLOCATE:
                ok = ring.prepFallocate(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, slot.rwFlags, slot.kiocb.pos(), slot.kiocb.length(), userData);
                break;
            default:
                ok = prepareRw(slot, userData);
                break;
        }
        if (!ok) {
            throw new IllegalStateException("io_uring SQ full although sized for every slot: " + ring);
        }
    }

    private boolean prepareRw(Slot slot, long userData)
    {
        IovIter iter = slot.kiocb.iter();
        long pos = slot.kiocb.pos();
        boolean write = slot.op == OP_WRITE;
        int nrSegs = Math.min(iter.nrSegs(), IOV_PER_SLOT);
        if (nrSegs == 1) {
            long address = iter.segmentAddress(0);
            int length = iter.segmentLength(0);
            int bufIndex = fixedBuffers.indexOf(address, length);
            if (bufIndex >= 0) {
                fixedSubmissions++;
                return write
                        ? ring.prepWriteFixed(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, address, length, pos, bufIndex, slot.rwFlags, userData)
                        : ring.prepReadFixed(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, address, length, pos, bufIndex, slot.rwFlags, userData);
            }
            return write
                    ? ring.prepWrite(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, address, length, pos, slot.rwFlags, userData)
                    : ring.prepRead(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, address, length, pos, slot.rwFlags, userData);
        }
        writeIovecs(slot, iter, nrSegs);
        return write
                ? ring.prepWritev(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, slot.iovecAddress, nrSegs, pos, slot.rwFlags, userData)
                : ring.prepReadv(FIXED_FILE, IoUring.IOSQE_FIXED_FILE, slot.iovecAddress, nrSegs, pos, slot.rwFlags, userData);
    }

    /** The slot's iovecs for the first {@code nrSegs} segments of {@code iter}. */
    private void writeIovecs(Slot slot, IovIter iter, int nrSegs)
    {
        long total = 0;
        for (int i = 0; i < nrSegs; i++) {
            long entry = 16L * IOV_PER_SLOT * slot.index + 16L * i;
            int length = iter.segmentLength(i);
            iovecs.putLong(entry, iter.segmentAddress(i));
            iovecs.putLong(entry + 8, length);
            total += length;
        }
        if (direct && (total & (BLOCK - 1)) != 0) {
            throw new IllegalStateException("O_DIRECT vector of " + total + " bytes");
        }
    }

    /**
     * Submits every SQE published so far, this thread's or another's, then reaps what the kernel completed
     * during the submission (page-cache hits complete inline) in this thread: no hand-off to the completion
     * thread for them. That thread is woken only when operations are left in the kernel.
     */
    private void submitPending()
    {
        enterQuietly();
        if (reapLock.isHeldByCurrentThread() || !reapLock.tryLock()) {
            // Called from a completion, or another thread reaps right now: it hands the CQEs on.
            return;
        }
        try {
            reapInline();
        }
        finally {
            reapLock.unlock();
        }
        wakeCompletionThread();
    }

    /** Submits what is published and makes sure the completion thread waits for it; reaps nothing. */
    private void submitAndWake()
    {
        enterQuietly();
        wakeCompletionThread();
    }

    /** Unparks the completion thread when operations are in flight (Dekker with {@link #parkWhileIdle}). */
    private void wakeCompletionThread()
    {
        if (busySlots > 0 && completionThreadParked) {
            LockSupport.unpark(completionThread);
        }
    }

    /** Reaps ready CQEs and submits the retries they wrote. Under {@link #reapLock}. */
    private void reapInline()
    {
        try {
            do {
                retried = false;
                ring.reap(handler);
                if (retried) {
                    enterQuietly();
                }
            }
            while (retried);
        }
        catch (NativeIoException | RuntimeException e) {
            log.error("io_uring completion on {}", fd, e);
        }
    }

    private void enterQuietly()
    {
        try {
            int res;
            int spins = 0;
            while ((res = ring.submitPublished()) == -Errno.EAGAIN || res == -Errno.EBUSY) {
                // The kernel is short of memory or holds a CQ backlog; the completion thread drains it.
                if (++spins > 1000) {
                    log.warn("io_uring_enter keeps failing with {}; leaving SQEs to the completion thread", Errno.name(res));
                    submitBacklog = true;
                    return;
                }
                Thread.onSpinWait();
            }
        }
        catch (NativeIoException e) {
            failSubmission(e);
        }
    }

    /**
     * {@code io_uring_enter} failed with something other than EAGAIN or EBUSY (EINTR is retried): the
     * ring cannot submit, and trying again would fail the same way. The SQEs the kernel has not taken
     * are withdrawn and their kiocbs completed with the error, so that nothing waits for them forever;
     * later operations fail at once. What the kernel took still completes through the CQ.
     */
    private void failSubmission(NativeIoException e)
    {
        log.error("io_uring submission failed on {}; failing the operations it had not taken", fd, e);
        if (sqpoll) {
            // The kernel's SQ thread takes SQEs on its own; the enter only woke it.
            return;
        }
        Kiocb[] failed = new Kiocb[slots.length];
        int n = 0;
        lock.lock();
        try {
            submitErrno = e.errno();
            long[] withdrawn = new long[slots.length + 2];
            int[] count = {0};
            ring.withdraw(userData -> withdrawn[count[0]++] = userData);
            for (int i = 0; i < count[0]; i++) {
                if (withdrawn[i] >= 0) {
                    Slot slot = slots[(int) withdrawn[i]];
                    failed[n++] = slot.kiocb;
                    release(slot);
                }
            }
        }
        finally {
            lock.unlock();
        }
        for (int i = 0; i < n; i++) {
            completeQuietly(failed[i], -e.errno());
        }
    }

    // ---- completion

    private void completionLoop()
    {
        while (!stopped) {
            try {
                int reaped;
                reapLock.lock();
                try {
                    retried = false;
                    reaped = ring.reap(handler);
                    // Only for its own retries (or a submission that gave up): entering for SQEs that a
                    // plug holds back would defeat the batching.
                    if (retried || submitBacklog) {
                        submitBacklog = false;
                        enterQuietly();
                    }
                }
                finally {
                    reapLock.unlock();
                }
                // Woken for CQEs that were still there to reap (the device's own I/O, not page-cache hits
                // that submitters reap inline): keep waiting in the kernel, where the next one is quickest.
                if (!stopped && (reaped > 0 || parkWhileIdle())) {
                    ring.waitCompletions(1);
                }
            }
            catch (NativeIoException | RuntimeException e) {
                log.error("io_uring completion loop on {}", fd, e);
                // A broken ring fails the same way at once: no hot loop of errors. CQEs still arrive in memory.
                LockSupport.parkNanos(this, 10_000_000L);
            }
        }
    }

    /**
     * While no operation is in flight, waits in Java rather than in {@code io_uring_enter}: a thread
     * waiting in the kernel is woken for every CQE, also for those its submitters reap inline. Returns
     * whether to wait for CQEs now. Used after a wakeup that found nothing to reap.
     */
    private boolean parkWhileIdle()
    {
        completionThreadParked = true;
        while (busySlots == 0 && !submitBacklog && !stopped) {
            LockSupport.park(this);
        }
        completionThreadParked = false;
        return !stopped;
    }

    private void handle(long userData, int res, int flags)
    {
        if (userData < 0) {
            return; // WAKEUP or CANCEL
        }
        Slot slot = slots[(int) userData];
        long result;
        try {
            result = progress(slot, res);
        }
        catch (RuntimeException e) {
            // A bug on this side must not leave the operation without its completion.
            log.error("io_uring completion of {} on {} failed; completing it with EIO", slot.kiocb, fd, e);
            result = -Errno.EIO;
        }
        if (result != RETRIED) {
            finish(slot, result);
        }
    }

    /**
     * Where a CQE leaves the slot's operation: its result, or {@link #RETRIED} when the same SQE went
     * to the ring again. A short read or write is a result; its rest is the submitter's to resubmit.
     */
    private long progress(Slot slot, int res)
    {
        if (slot.op != OP_READ && slot.op != OP_WRITE) {
            return closing ? -Errno.ECANCELED : res;
        }
        if ((res == -Errno.EAGAIN || res == -Errno.EINTR) && !closing) {
            // Nothing was transferred: the same SQE goes to the ring again.
            LentRing lent = slot.lent;
            if (lent != null) {
                if (!prepareLent(slot, lent)) {
                    lent.hold(slot.held);
                }
            }
            else {
                resubmit(slot);
            }
            return RETRIED;
        }
        if (res > 0) {
            slot.kiocb.iter().advance(res);
        }
        if (closing) {
            return -Errno.ECANCELED;
        }
        if (res == 0 && slot.op == OP_WRITE) {
            return -Errno.EIO;
        }
        return res;
    }

    private void resubmit(Slot slot)
    {
        lock.lock();
        try {
            prepare(slot);
            ring.flush();
        }
        finally {
            lock.unlock();
        }
        retried = true;
    }

    private void finish(Slot slot, long res)
    {
        Kiocb kiocb = slot.kiocb;
        lock.lock();
        try {
            release(slot);
        }
        finally {
            lock.unlock();
            completeQuietly(kiocb, res);
        }
    }

    /**
     * Completes outside every lock. A callback that throws is the caller's bug; the kiocb has completed
     * all the same, and the reaper goes on with the next CQE instead of losing the batch.
     */
    private static void completeQuietly(Kiocb kiocb, long res)
    {
        try {
            kiocb.complete(res);
        }
        catch (RuntimeException | Error e) {
            log.error("completion callback of {} failed", kiocb, e);
        }
    }

    private void unlockBlocks(int hold)
    {
        if (hold != NO_HOLD) {
            blockLock.unlock(hold);
        }
    }

    /** Returns a slot to the free list. Under {@link #lock}. */
    private void release(Slot slot)
    {
        unlockBlocks(slot.blockHold);
        slot.clear();
        freeSlots[nrFree++] = slot.index;
        busySlots = slots.length - nrFree;
        slotFreed.signalAll();
    }

    // ---- close

    @Override
    public void close()
            throws IOException
    {
        if (Thread.currentThread() == completionThread || reapLock.isHeldByCurrentThread()) {
            throw new IllegalStateException("close() from a completion callback would wait for itself");
        }
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            closing = true;
            slotFreed.signalAll();
            if (nrFree < slots.length) {
                // One SQE cancels every request the ring still has (IORING_ASYNC_CANCEL_ANY, 5.19+);
                // where it cannot, the requests finish on their own. Either way each completes once.
                ring.prepAsyncCancel(0, IoUring.ASYNC_CANCEL_ALL | IoUring.ASYNC_CANCEL_ANY, CANCEL);
                ring.flush();
            }
        }
        finally {
            lock.unlock();
        }
        submitPending();
        lock.lock();
        try {
            while (nrFree < slots.length) {
                slotFreed.awaitUninterruptibly();
            }
            stopped = true;
            ring.prepNop(WAKEUP);
            ring.flush();
        }
        finally {
            lock.unlock();
        }
        // Not submitPending(): reaping the wakeup here could leave the completion thread asleep in the kernel.
        enterQuietly();
        LockSupport.unpark(completionThread);
        boolean interrupted = false;
        while (true) {
            try {
                completionThread.join();
                break;
            }
            catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        // A submitter reaping inline may still be inside ring.reap, returning from the very completion
        // that let this close go on; it advances the CQ head after the callbacks. Unmapping the ring
        // under it would crash the process: wait until it has left.
        reapLock.lock();
        try {
            ring.close();
        }
        finally {
            reapLock.unlock();
            fd.close();
        }
    }

    @Override
    public String toString()
    {
        return "IoUringBackingFile{" + fd.path() + ", " + ring + ", direct=" + direct + ", readOnly=" + readOnly + "}";
    }

    /** Per-thread deferral of {@code io_uring_enter} ({@code blk_plug}). */
    private static final class Plug
    {
        int depth;
        boolean pending;
    }

    /** One operation in flight: its kiocb and its SQE flags. Touched by one thread at a time (the owner of the operation). */
    private static final class Slot
    {
        final int index;
        final long iovecAddress;
        Kiocb kiocb;
        int op;
        /** The SQE's flags: RWF_DSYNC, FSYNC_DATASYNC or the fallocate mode; the rest of the SQE comes from the kiocb. */
        int rwFlags;
        /** The operation's hold on its {@code O_DIRECT} blocks, released with the slot; {@link #NO_HOLD} if none. */
        int blockHold = NO_HOLD;
        /** The ring a submitter lent for this operation; null on the file's own ring. */
        LentRing lent;
        /** Writes this slot's SQE on a lent ring, for when it had to wait for room there. */
        LentRing.Held held;

        Slot(int index, long iovecAddress)
        {
            this.index = index;
            this.iovecAddress = iovecAddress;
        }

        void init(Kiocb kiocb, int op, int rwFlags)
        {
            this.kiocb = kiocb;
            this.op = op;
            this.rwFlags = rwFlags;
        }

        void clear()
        {
            kiocb = null;
            blockHold = NO_HOLD;
            lent = null;
            op = -1;
        }
    }

    /** The synchronous bounce path of one thread: pread/pwrite on the file, O_DIRECT writes holding their blocks exclusively. */
    private final class SyncBounce
            extends BounceIo
    {
        SyncBounce()
        {
            super(direct, BOUNCE_SIZE, blockLock, submitPending);
        }

        @Override
        protected long read(ByteBuffer buffer, long address, long pos)
        {
            return Posix.pread(fd.intValue(), address, buffer.remaining(), pos);
        }

        @Override
        protected long write(ByteBuffer buffer, long address, long pos)
        {
            long done = 0;
            long count = buffer.remaining();
            while (done < count) {
                long n = Posix.pwrite(fd.intValue(), address + done, count - done, pos + done);
                if (n < 0) {
                    return done > 0 ? done : n;
                }
                if (n == 0) {
                    return done > 0 ? done : -Errno.EIO;
                }
                done += n;
            }
            return done;
        }

        @Override
        protected long truncate(long size)
        {
            return Posix.ftruncate(fd.intValue(), size);
        }
    }
}
