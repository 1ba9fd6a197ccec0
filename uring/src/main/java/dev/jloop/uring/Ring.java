package dev.jloop.uring;

import com.kenai.jffi.MemoryIO;
import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

import static dev.jloop.uring.IoUring.ENTER_GETEVENTS;
import static dev.jloop.uring.IoUring.ENTER_SQ_WAKEUP;
import static dev.jloop.uring.IoUring.FEAT_SINGLE_MMAP;
import static dev.jloop.uring.IoUring.SETUP_CQE32;
import static dev.jloop.uring.IoUring.SETUP_CQSIZE;
import static dev.jloop.uring.IoUring.SETUP_SQE128;
import static dev.jloop.uring.IoUring.SETUP_SQPOLL;
import static dev.jloop.uring.IoUring.SQ_CQ_OVERFLOW;
import static dev.jloop.uring.IoUring.SQ_NEED_WAKEUP;
import static dev.jloop.uring.IoUring.SQ_TASKRUN;
import static java.util.Objects.requireNonNull;

/**
 * One io_uring instance: the submission queue (SQ) and its SQE array, the completion queue (CQ), both
 * mmapped from the ring fd, and the calls on it ({@code io_uring_setup(2)}, {@code io_uring_enter(2)},
 * {@code io_uring_register(2)}).
 *
 * <p>Layout: every offset inside the rings comes from {@code io_uring_params.sq_off/cq_off}, never a
 * constant; with {@code IORING_FEAT_SINGLE_MMAP} the SQ and CQ rings share one mapping. SQEs are 64 bytes,
 * 128 with {@link IoUring#SETUP_SQE128}; CQEs 16 bytes, 32 with {@link IoUring#SETUP_CQE32}.
 *
 * <p>Memory ordering, per {@code io_uring(7)} and liburing's {@code barrier.h}: SQEs and the SQ array are
 * written with plain stores, then the SQ tail is stored with release semantics; the CQ tail is loaded
 * with acquire semantics before the CQEs are read, and the CQ head is stored with release semantics
 * after. Under SQPOLL a full fence separates the tail store from the read of {@code IORING_SQ_NEED_WAKEUP}.
 *
 * <p>Threading: not thread-safe, but split in two sides. The SQ side ({@code prep*}, {@link #flush()},
 * {@link #sqSpace()}) must be used by one thread at a time (the caller's lock); the CQ side
 * ({@link #reap}, {@link #waitCompletions}) by one thread at a time, possibly another one.
 * {@link #enter} may be called by any thread: the kernel serialises submission.
 * A ring set up with {@link IoUring#SETUP_SINGLE_ISSUER} must see every submitting enter from one thread.
 *
 * <p>Ownership: memory an SQE points to must stay valid until its CQE has been reaped.
 */
public final class Ring
        implements AutoCloseable
{
    private static final VarHandle INT = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.nativeOrder());

    private static final long OFF_SQ_RING = 0L;
    private static final long OFF_CQ_RING = 0x8000000L;
    private static final long OFF_SQES = 0x10000000L;
    private static final int PARAMS_SIZE = 120;
    private static final int PROBE_OPS = 256;

    private final int fd;
    private final int setupFlags;
    private final int features;
    private final int sqEntries;
    private final int cqEntries;
    private final int sqeSize;
    private final int cqeSize;

    private final long sqRingAddress;
    private final long sqRingSize;
    private final long cqRingAddress;
    private final long cqRingSize;
    private final long sqesAddress;
    private final long sqesSize;

    private final ByteBuffer sqRing;
    private final ByteBuffer cqRing;
    private final ByteBuffer sqes;

    private final int sqHead;
    private final int sqTail;
    private final int sqFlags;
    private final int sqDropped;
    private final int cqHead;
    private final int cqTail;
    private final int cqMask;
    private final int cqOverflow;
    private final int cqes;

    private final boolean[] supportedOps = new boolean[PROBE_OPS];
    private final AtomicLong submitCalls = new AtomicLong();

    /** Next SQE to hand out; SQ side only. */
    private int sqeTail;
    /** Next CQE to read; CQ side only. */
    private int localCqHead;
    /** Offset of the CQE being handed to a handler; CQ side only. */
    private int reapingOffset;
    /** Native memory of the registered files and buffers, kept reachable while registered. */
    private Pointer registeredBuffers;
    private Pointer registeredFiles;
    private boolean closed;

    private Ring(Builder builder)
            throws NativeIoException
    {
        Pointer params = Memory.allocateDirect(Native.RUNTIME, PARAMS_SIZE, true);
        params.putInt(4, builder.cqEntries);
        params.putInt(8, builder.flags | (builder.cqEntries > 0 ? SETUP_CQSIZE : 0));
        params.putInt(12, builder.sqThreadCpu);
        params.putInt(16, builder.sqThreadIdleMillis);
        fd = Errors.check("io_uring_setup", Native.ioUringSetup(builder.entries, params));

        long sqMapped = 0;
        long cqMapped = 0;
        long sqesMapped = 0;
        long sqSize = 0;
        long cqSize = 0;
        long sqesLength = 0;
        try {
            sqEntries = params.getInt(0);
            cqEntries = params.getInt(4);
            setupFlags = params.getInt(8);
            features = params.getInt(20);
            sqeSize = (setupFlags & SETUP_SQE128) != 0 ? 128 : 64;
            cqeSize = (setupFlags & SETUP_CQE32) != 0 ? 32 : 16;

            // struct io_sqring_offsets at 40, struct io_cqring_offsets at 80 (io_uring.h)
            sqHead = params.getInt(40);
            sqTail = params.getInt(44);
            sqFlags = params.getInt(56);
            sqDropped = params.getInt(60);
            int sqArray = params.getInt(64);
            cqHead = params.getInt(80);
            cqTail = params.getInt(84);
            int cqMaskOffset = params.getInt(88);
            cqOverflow = params.getInt(96);
            cqes = params.getInt(100);

            sqSize = sqArray + 4L * sqEntries;
            cqSize = cqes + (long) cqeSize * cqEntries;
            if ((features & FEAT_SINGLE_MMAP) != 0) {
                sqSize = Math.max(sqSize, cqSize);
                cqSize = sqSize;
            }
            sqMapped = map("mmap(IORING_OFF_SQ_RING)", sqSize, OFF_SQ_RING);
            cqMapped = (features & FEAT_SINGLE_MMAP) != 0 ? sqMapped : map("mmap(IORING_OFF_CQ_RING)", cqSize, OFF_CQ_RING);
            sqesLength = (long) sqeSize * sqEntries;
            sqesMapped = map("mmap(IORING_OFF_SQES)", sqesLength, OFF_SQES);

            sqRingAddress = sqMapped;
            sqRingSize = sqSize;
            cqRingAddress = cqMapped;
            cqRingSize = cqSize;
            sqesAddress = sqesMapped;
            sqesSize = sqesLength;
            sqRing = view(sqMapped, sqSize);
            cqRing = cqMapped == sqMapped ? sqRing : view(cqMapped, cqSize);
            sqes = view(sqesMapped, sqesLength);
            // sq_off.ring_mask / cq_off.ring_mask are offsets of the masks in the rings, not the masks.
            cqMask = cqRing.getInt(cqMaskOffset);
            if (sqRing.getInt(params.getInt(48)) != sqEntries - 1) {
                throw new IllegalStateException("SQ ring mask is not sq_entries - 1");
            }

            // SQ array slot i always names SQE i: SQEs are handed out in ring order, as liburing does.
            for (int i = 0; i < sqEntries; i++) {
                sqRing.putInt(sqArray + 4 * i, i);
            }
            sqeTail = (int) INT.getAcquire(sqRing, sqTail);
            localCqHead = (int) INT.getAcquire(cqRing, cqHead);
            probe();
        }
        catch (NativeIoException | RuntimeException e) {
            unmapQuietly(sqesMapped, sqesLength);
            if (cqMapped != sqMapped) {
                unmapQuietly(cqMapped, cqSize);
            }
            unmapQuietly(sqMapped, sqSize);
            Posix.close(fd);
            throw e;
        }
    }

    private static void unmapQuietly(long address, long length)
    {
        if (address != 0) {
            Posix.munmap(address, length);
        }
    }

    private long map(String what, long length, long offset)
            throws NativeIoException
    {
        long address = Posix.mmap(length, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED | Posix.MAP_POPULATE, fd, offset);
        if (address < 0) {
            throw Errors.newIOException(what, address);
        }
        return address;
    }

    private static ByteBuffer view(long address, long length)
    {
        return MemoryIO.getInstance().newDirectByteBuffer(address, Math.toIntExact(length)).order(ByteOrder.nativeOrder());
    }

    /** A ring of {@code entries} SQEs (rounded up to a power of two by the kernel). */
    public static Builder builder(int entries)
    {
        return new Builder(entries);
    }

    public int fd()
    {
        return fd;
    }

    /** SQ size as the kernel set it up. */
    public int sqEntries()
    {
        return sqEntries;
    }

    /** CQ size as the kernel set it up (twice the SQ unless {@code cqEntries} was given). */
    public int cqEntries()
    {
        return cqEntries;
    }

    /** The setup flags in effect. */
    public int setupFlags()
    {
        return setupFlags;
    }

    /** {@code IORING_FEAT_*} bits the kernel reported. */
    public int features()
    {
        return features;
    }

    public int sqeSize()
    {
        return sqeSize;
    }

    public int cqeSize()
    {
        return cqeSize;
    }

    /** Whether the kernel knows {@code opcode}, from {@code IORING_REGISTER_PROBE} at setup. */
    public boolean isSupported(int opcode)
    {
        return opcode >= 0 && opcode < PROBE_OPS && supportedOps[opcode];
    }

    /** How many {@code io_uring_enter} calls submitted SQEs (for batching statistics and tests). */
    public long submitCalls()
    {
        return submitCalls.get();
    }

    // ---- SQ side

    /** Free SQEs: the ones neither handed out nor still unconsumed by the kernel. */
    public int sqSpace()
    {
        return sqEntries - (sqeTail - (int) INT.getAcquire(sqRing, sqHead));
    }

    /** SQEs published to the kernel but not consumed by it yet; may be called from any thread. */
    public int sqPending()
    {
        return (int) INT.getAcquire(sqRing, sqTail) - (int) INT.getAcquire(sqRing, sqHead);
    }

    /** SQEs the kernel dropped as invalid ({@code sq_off.dropped}). */
    public int sqDropped()
    {
        return (int) INT.getAcquire(sqRing, sqDropped);
    }

    /**
     * Writes a zeroed SQE with the common fields; returns {@code false} when the SQ is full (then
     * {@link #submit()} and reap first). The SQE is seen by the kernel after {@link #flush()}.
     */
    public boolean prep(int opcode, int sqeFlags, int fd, long offset, long addr, int len, int opFlags, long userData, int bufIndex)
    {
        if (sqeTail - (int) INT.getAcquire(sqRing, sqHead) >= sqEntries) {
            return false;
        }
        int base = (sqeTail & (sqEntries - 1)) * sqeSize;
        for (int i = 0; i < sqeSize; i += 8) {
            sqes.putLong(base + i, 0);
        }
        sqes.put(base, (byte) opcode);
        sqes.put(base + 1, (byte) sqeFlags);
        sqes.putInt(base + 4, fd);
        sqes.putLong(base + 8, offset);
        sqes.putLong(base + 16, addr);
        sqes.putInt(base + 24, len);
        sqes.putInt(base + 28, opFlags);
        sqes.putLong(base + 32, userData);
        sqes.putShort(base + 40, (short) bufIndex);
        sqeTail++;
        return true;
    }

    /**
     * Byte offset in {@link #sqeBuffer()} of the SQE most recently written by a {@code prep*} call, for
     * fields this class does not know (the command area of a 128-byte SQE, for example).
     */
    public int lastSqeOffset()
    {
        return ((sqeTail - 1) & (sqEntries - 1)) * sqeSize;
    }

    /** The mmapped SQE array (native byte order); SQ side only. */
    public ByteBuffer sqeBuffer()
    {
        return sqes;
    }

    /**
     * A multishot {@code IORING_OP_RECV} on {@code fd}: each chunk received goes into a buffer the kernel
     * takes from provided-buffer group {@code bufferGroup} ({@link BufferRing}) and gets its own CQE, with
     * the buffer's id in the CQE flags ({@link IoUring#CQE_F_BUFFER}); the receive stays armed while the
     * CQEs carry {@link IoUring#CQE_F_MORE}. It ends on end of input, an error, a cancel, or
     * {@code -ENOBUFS} when the group has no buffer left; the bytes not received stay in the socket.
     */
    public boolean prepRecvMultishot(int fd, int sqeFlags, int bufferGroup, int msgFlags, long userData)
    {
        if (!prep(IoUring.OP_RECV, sqeFlags | IoUring.IOSQE_BUFFER_SELECT, fd, 0, 0, 0, msgFlags, userData, bufferGroup)) {
            return false;
        }
        sqes.putShort(lastSqeOffset() + 2, (short) IoUring.RECV_MULTISHOT);
        return true;
    }

    public boolean prepNop(long userData)
    {
        return prep(IoUring.OP_NOP, 0, -1, 0, 0, 0, 0, userData, 0);
    }

    /** {@code IORING_OP_READ}: {@code len} bytes at {@code offset} into {@code addr}. */
    public boolean prepRead(int fd, int sqeFlags, long addr, int len, long offset, int rwFlags, long userData)
    {
        return prep(IoUring.OP_READ, sqeFlags, fd, offset, addr, len, rwFlags, userData, 0);
    }

    public boolean prepWrite(int fd, int sqeFlags, long addr, int len, long offset, int rwFlags, long userData)
    {
        return prep(IoUring.OP_WRITE, sqeFlags, fd, offset, addr, len, rwFlags, userData, 0);
    }

    /** {@code IORING_OP_READV}: {@code iovecs} is the address of {@code nrVecs} {@code struct iovec}s. */
    public boolean prepReadv(int fd, int sqeFlags, long iovecs, int nrVecs, long offset, int rwFlags, long userData)
    {
        return prep(IoUring.OP_READV, sqeFlags, fd, offset, iovecs, nrVecs, rwFlags, userData, 0);
    }

    public boolean prepWritev(int fd, int sqeFlags, long iovecs, int nrVecs, long offset, int rwFlags, long userData)
    {
        return prep(IoUring.OP_WRITEV, sqeFlags, fd, offset, iovecs, nrVecs, rwFlags, userData, 0);
    }

    /** {@code IORING_OP_READ_FIXED}: {@code [addr, addr + len)} must lie inside registered buffer {@code bufIndex}. */
    public boolean prepReadFixed(int fd, int sqeFlags, long addr, int len, long offset, int bufIndex, int rwFlags, long userData)
    {
        return prep(IoUring.OP_READ_FIXED, sqeFlags, fd, offset, addr, len, rwFlags, userData, bufIndex);
    }

    public boolean prepWriteFixed(int fd, int sqeFlags, long addr, int len, long offset, int bufIndex, int rwFlags, long userData)
    {
        return prep(IoUring.OP_WRITE_FIXED, sqeFlags, fd, offset, addr, len, rwFlags, userData, bufIndex);
    }

    /** {@code IORING_OP_FSYNC}; not ordered against writes in flight ({@code io_uring_enter(2)}). */
    public boolean prepFsync(int fd, int sqeFlags, int fsyncFlags, long userData)
    {
        return prep(IoUring.OP_FSYNC, sqeFlags, fd, 0, 0, 0, fsyncFlags, userData, 0);
    }

    /** {@code IORING_OP_FALLOCATE}: the length travels in {@code addr} and the mode in {@code len} ({@code io_uring_enter(2)}). */
    public boolean prepFallocate(int fd, int sqeFlags, int mode, long offset, long length, long userData)
    {
        return prep(IoUring.OP_FALLOCATE, sqeFlags, fd, offset, length, mode, 0, userData, 0);
    }

    /**
     * {@code IORING_OP_SPLICE}: moves up to {@code len} bytes from {@code fdIn} at {@code offIn} to
     * {@code fdOut} at {@code offOut}, one of them a pipe, whose offset must be -1 (Linux 5.7+). The
     * SQE's fd is {@code fdOut} (a registered file under {@link IoUring#IOSQE_FIXED_FILE}); {@code fdIn}
     * goes in {@code splice_fd_in} (a registered file under {@link IoUring#SPLICE_F_FD_IN_FIXED}) and
     * {@code offIn} in {@code splice_off_in}. The kernel always runs it in an io-wq worker, and a
     * result shorter than {@code len} breaks a link ({@code io_uring/splice.c}).
     */
    public boolean prepSplice(int fdIn, long offIn, int fdOut, long offOut, int len, int spliceFlags, int sqeFlags, long userData)
    {
        if (!prep(IoUring.OP_SPLICE, sqeFlags, fdOut, offOut, offIn, len, spliceFlags, userData, 0)) {
            return false;
        }
        sqes.putInt(lastSqeOffset() + 44, fdIn);
        return true;
    }

    /** {@code IORING_OP_ASYNC_CANCEL} of the request with {@code target} user data, or as {@code cancelFlags} say. */
    public boolean prepAsyncCancel(long target, int cancelFlags, long userData)
    {
        return prep(IoUring.OP_ASYNC_CANCEL, 0, -1, 0, target, 0, cancelFlags, userData, 0);
    }

    /**
     * Takes back the SQEs written or published but not consumed by the kernel: hands each one's user
     * data to {@code sink} and moves the SQ tail back to the kernel's head. For a ring whose submission
     * failed for good, so that what it holds can be failed instead of waiting forever. SQ side; only
     * while no {@code io_uring_enter(2)} runs and never under SQPOLL, whose kernel thread consumes SQEs
     * on its own. Returns how many were taken back.
     */
    public int withdraw(LongConsumer sink)
    {
        if ((setupFlags & SETUP_SQPOLL) != 0) {
            throw new IllegalStateException("SQEs cannot be taken back from an SQPOLL ring");
        }
        int head = (int) INT.getAcquire(sqRing, sqHead);
        int n = 0;
        for (int i = head; i != sqeTail; i++) {
            sink.accept(sqes.getLong((i & (sqEntries - 1)) * sqeSize + 32));
            n++;
        }
        sqeTail = head;
        INT.setRelease(sqRing, sqTail, head);
        return n;
    }

    /** Publishes the SQEs written so far (store-release of the SQ tail). Returns how many the kernel has not consumed. */
    public int flush()
    {
        INT.setRelease(sqRing, sqTail, sqeTail);
        return sqeTail - (int) INT.getAcquire(sqRing, sqHead);
    }

    /** Publishes and submits the SQEs written so far; returns how many the kernel consumed. */
    public int submit()
            throws NativeIoException
    {
        return submitAndWait(0);
    }

    /**
     * Publishes and submits the SQEs written so far and waits until at least {@code waitNr} CQEs are
     * ready. Returns how many SQEs the kernel consumed, or {@code -EAGAIN}/{@code -EBUSY} when it could
     * not take them now (reap, then retry).
     */
    public int submitAndWait(int waitNr)
            throws NativeIoException
    {
        int pending = flush();
        int flags = 0;
        if ((setupFlags & SETUP_SQPOLL) != 0) {
            // The kernel thread consumes the SQ itself; enter only to wake it or to wait.
            VarHandle.fullFence();
            if (((int) INT.getAcquire(sqRing, sqFlags) & SQ_NEED_WAKEUP) != 0) {
                flags |= ENTER_SQ_WAKEUP;
            }
            if (flags == 0 && waitNr == 0 && !completionsHeld()) {
                return pending;
            }
        }
        if (waitNr > 0 || completionsHeld()) {
            flags |= ENTER_GETEVENTS;
        }
        if (pending == 0 && flags == 0) {
            return 0;
        }
        return enter(pending, waitNr, flags);
    }

    /**
     * Submits every SQE published so far by any thread's {@link #flush()} (under SQPOLL: wakes the
     * kernel thread if it sleeps). Safe from any thread; makes no syscall when nothing is pending.
     * Returns the SQEs consumed, or {@code -EAGAIN}/{@code -EBUSY} as {@link #enter} does.
     */
    public int submitPublished()
            throws NativeIoException
    {
        if ((setupFlags & SETUP_SQPOLL) != 0) {
            VarHandle.fullFence();
            if (((int) INT.getAcquire(sqRing, sqFlags) & SQ_NEED_WAKEUP) != 0) {
                return enter(0, 0, ENTER_SQ_WAKEUP);
            }
            return 0;
        }
        int pending = sqPending();
        if (pending == 0) {
            return 0;
        }
        return enter(pending, 0, completionsHeld() ? ENTER_GETEVENTS : 0);
    }

    /**
     * {@code io_uring_enter(2)}, retried on EINTR. Safe from any thread. {@code toSubmit} larger than
     * what is pending submits all that is pending (the kernel clamps it). Returns the SQEs consumed, or
     * {@code -EAGAIN}/{@code -EBUSY} (a result, not an error: the kernel is short of resources or the
     * CQ backlog is full; reap and retry).
     */
    public int enter(int toSubmit, int minComplete, int flags)
            throws NativeIoException
    {
        if (toSubmit > 0) {
            submitCalls.incrementAndGet();
        }
        while (true) {
            int res = Native.ioUringEnter(fd, toSubmit, minComplete, flags);
            if (res >= 0 || res == -Errors.EAGAIN || res == -Errors.EBUSY) {
                return res;
            }
            if (res != -Errors.EINTR) {
                throw Errors.newIOException("io_uring_enter", res);
            }
        }
    }

    // ---- CQ side

    /** CQEs ready to reap. */
    public int cqReady()
    {
        return (int) INT.getAcquire(cqRing, cqTail) - localCqHead;
    }

    /** CQEs the kernel could not post because the CQ was full (without {@code IORING_FEAT_NODROP}). */
    public int cqOverflow()
    {
        return (int) INT.getAcquire(cqRing, cqOverflow);
    }

    /**
     * Hands every ready CQE to {@code handler}, in order, and returns how many. When the kernel holds
     * completions back because the CQ was full ({@code IORING_SQ_CQ_OVERFLOW}), enters with GETEVENTS to
     * have them flushed into the CQ and reaps them too, so none is lost.
     */
    public int reap(CompletionHandler handler)
            throws NativeIoException
    {
        requireNonNull(handler, "handler is null");
        int n = 0;
        while (true) {
            int tail = (int) INT.getAcquire(cqRing, cqTail);
            int head = localCqHead;
            if (head == tail) {
                if (completionsHeld()) {
                    enter(0, 0, ENTER_GETEVENTS);
                    if (cqReady() > 0) {
                        continue;
                    }
                }
                return n;
            }
            try {
                while (head != tail) {
                    int base = cqes + (head & cqMask) * cqeSize;
                    reapingOffset = base;
                    long userData = cqRing.getLong(base);
                    int res = cqRing.getInt(base + 8);
                    int flags = cqRing.getInt(base + 12);
                    head++;
                    n++;
                    handler.handle(userData, res, flags);
                }
            }
            finally {
                localCqHead = head;
                INT.setRelease(cqRing, cqHead, head);
            }
        }
    }

    /** Byte offset in {@link #cqeBuffer()} of the CQE that {@link #reap} hands over right now (for the big-CQE tail). */
    public int currentCqeOffset()
    {
        return reapingOffset;
    }

    /** The mmapped CQ ring (native byte order). */
    public ByteBuffer cqeBuffer()
    {
        return cqRing;
    }

    /** Blocks until at least {@code minComplete} CQEs are ready (enter with GETEVENTS, submitting nothing). */
    public int waitCompletions(int minComplete)
            throws NativeIoException
    {
        if (cqReady() >= minComplete) {
            return 0;
        }
        return enter(0, minComplete, ENTER_GETEVENTS);
    }

    /**
     * Whether the kernel holds completions that only an enter with GETEVENTS brings into the CQ (which
     * {@link #reap} does): CQEs held back by an overflow, or under {@code COOP_TASKRUN} with
     * {@code TASKRUN_FLAG} the work items that complete operations, which run on the next enter.
     */
    public boolean completionsHeld()
    {
        return ((int) INT.getAcquire(sqRing, sqFlags) & (SQ_CQ_OVERFLOW | SQ_TASKRUN)) != 0;
    }

    // ---- registration

    /**
     * {@code IORING_REGISTER_BUFFERS}: {@code addresses[i], lengths[i]} becomes fixed buffer {@code i}
     * for READ_FIXED/WRITE_FIXED. The memory must be anonymous (a direct buffer, not a file mapping),
     * stays pinned and counts against {@code RLIMIT_MEMLOCK} ({@code io_uring_register(2)}).
     */
    public void registerBuffers(long[] addresses, long[] lengths)
            throws NativeIoException
    {
        if (addresses.length != lengths.length || addresses.length == 0) {
            throw new IllegalArgumentException("need as many lengths as addresses, at least one");
        }
        Pointer iovecs = Memory.allocateDirect(Native.RUNTIME, 16 * addresses.length, true);
        for (int i = 0; i < addresses.length; i++) {
            iovecs.putLong(16L * i, addresses[i]);
            iovecs.putLong(16L * i + 8, lengths[i]);
        }
        Errors.check("io_uring_register(IORING_REGISTER_BUFFERS)",
                Native.ioUringRegister(fd, IoUring.REGISTER_BUFFERS, iovecs, addresses.length));
        registeredBuffers = iovecs;
    }

    public void unregisterBuffers()
            throws NativeIoException
    {
        Errors.check("io_uring_register(IORING_UNREGISTER_BUFFERS)",
                Native.ioUringRegister(fd, IoUring.UNREGISTER_BUFFERS, null, 0));
        registeredBuffers = null;
    }

    /** {@code IORING_REGISTER_FILES}: {@code fds[i]} becomes fixed file {@code i}, used with {@link IoUring#IOSQE_FIXED_FILE}. */
    public void registerFiles(int... fds)
            throws NativeIoException
    {
        if (fds.length == 0) {
            throw new IllegalArgumentException("no files");
        }
        Pointer array = Memory.allocateDirect(Native.RUNTIME, 4 * fds.length, true);
        for (int i = 0; i < fds.length; i++) {
            array.putInt(4L * i, fds[i]);
        }
        Errors.check("io_uring_register(IORING_REGISTER_FILES)",
                Native.ioUringRegister(fd, IoUring.REGISTER_FILES, array, fds.length));
        registeredFiles = array;
    }

    public void unregisterFiles()
            throws NativeIoException
    {
        Errors.check("io_uring_register(IORING_UNREGISTER_FILES)",
                Native.ioUringRegister(fd, IoUring.UNREGISTER_FILES, null, 0));
        registeredFiles = null;
    }

    private void probe()
            throws NativeIoException
    {
        // struct io_uring_probe: 16-byte header, then 8-byte io_uring_probe_op entries
        Pointer probe = Memory.allocateDirect(Native.RUNTIME, 16 + 8 * PROBE_OPS, true);
        Errors.check("io_uring_register(IORING_REGISTER_PROBE)",
                Native.ioUringRegister(fd, IoUring.REGISTER_PROBE, probe, PROBE_OPS));
        int opsLen = probe.getByte(1) & 0xff;
        for (int i = 0; i < opsLen; i++) {
            int op = probe.getByte(16 + 8L * i) & 0xff;
            int flags = probe.getShort(16 + 8L * i + 2) & 0xffff;
            supportedOps[op] = (flags & 1) != 0; // IO_URING_OP_SUPPORTED
        }
    }

    /**
     * Unmaps the rings and closes the ring fd; the kernel cancels what is still in flight. Idempotent.
     * No other method may be called afterwards, nor concurrently (the rings' memory is gone).
     */
    @Override
    public void close()
    {
        if (closed) {
            return;
        }
        closed = true;
        Posix.munmap(sqesAddress, sqesSize);
        if (cqRingAddress != sqRingAddress) {
            Posix.munmap(cqRingAddress, cqRingSize);
        }
        Posix.munmap(sqRingAddress, sqRingSize);
        Posix.close(fd);
        registeredBuffers = null;
        registeredFiles = null;
    }

    @Override
    public String toString()
    {
        return "Ring{fd=" + fd + ", sq=" + sqEntries + ", cq=" + cqEntries + ", flags=0x" + Integer.toHexString(setupFlags)
                + ", features=0x" + Integer.toHexString(features) + ", via " + Native.implementation() + "}";
    }

    /** Parameters of {@code io_uring_setup(2)}. */
    public static final class Builder
    {
        private final int entries;
        private int cqEntries;
        private int flags;
        private int sqThreadCpu;
        private int sqThreadIdleMillis;

        private Builder(int entries)
        {
            if (entries < 1) {
                throw new IllegalArgumentException("entries must be positive: " + entries);
            }
            this.entries = entries;
        }

        /** {@code IORING_SETUP_*} flags, e.g. {@link IoUring#SETUP_SQPOLL}, {@link IoUring#SETUP_SQE128}. */
        public Builder flags(int flags)
        {
            this.flags = flags;
            return this;
        }

        /** CQ size (sets {@code IORING_SETUP_CQSIZE}); must be at least the SQ size. */
        public Builder cqEntries(int cqEntries)
        {
            this.cqEntries = cqEntries;
            return this;
        }

        /** SQPOLL thread idle time before it sleeps and needs a wakeup. */
        public Builder sqThreadIdleMillis(int millis)
        {
            this.sqThreadIdleMillis = millis;
            return this;
        }

        public Builder sqThreadCpu(int cpu)
        {
            this.sqThreadCpu = cpu;
            return this;
        }

        public Ring open()
                throws NativeIoException
        {
            return new Ring(this);
        }
    }
}
