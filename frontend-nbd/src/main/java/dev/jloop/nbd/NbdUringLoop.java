package dev.jloop.nbd;

import dev.jloop.api.BackingFile;
import dev.jloop.api.BlockDevice;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import dev.jloop.uring.BusyPoll;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.FixedBuffers;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.Ring;
import dev.jloop.uring.RingBorrower;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOMEM;
import static java.util.Objects.requireNonNull;

/**
 * The transmission phase of one plain-socket connection as an io_uring event loop on the
 * connection's own thread: the socket's receive (single-shot {@code IORING_OP_RECV} into the input
 * buffer by default, or a multishot one into provided buffers, {@link MultishotReceiver};
 * {@code IORING_OP_RECVMSG} straight into the pages of a large WRITE payload) and send
 * ({@code IORING_OP_SENDMSG} of every reply ready, gathered) are operations on the connection's ring,
 * so one {@code io_uring_enter} submits the replies and the next receive and waits for whatever
 * comes first. There is no writer thread: a request whose reply is made on this thread (page-cache
 * hits that complete inside the submission, refusals, BLOCK_STATUS) costs no thread wake-up at all.
 * Requests that complete on a device thread are pushed on a lock-free stack, and the first push
 * onto an empty stack writes the loop's eventfd, whose read is always posted on the ring: one
 * wake-up per batch, never one per request.
 *
 * <p>When the device's file is the io_uring backend's ({@link RingBorrower}, with no filter
 * between), the loop lends it its ring ({@link LentRing}): the file's reads, writes, fsyncs and
 * fallocates of this connection's requests go on this ring too, so one {@code io_uring_enter}
 * submits the replies of finished requests, the file I/O of new ones and the next receive, and
 * reaps all of their completions; a request then meets no other thread at all. The file is a
 * registered file of the ring, beside the socket. File operations that find the SQ full are held
 * and written at the next turn, before the enter: the loop keeps {@value #RING_ENTRIES} SQEs for its
 * own operations, and a completion never waits for room. Large READs of such a file, when it is
 * buffered, skip the pages: {@link SplicedReads} splices their data from the file to the socket
 * through a pipe, and the loop sends each one's header as the last buffer of a send batch, the
 * data right after it.
 *
 * <p>Per connection, not per core: a connection's requests already live on one thread, its ring
 * is used by that thread alone (so no lock on either side of it), and a slow client slows down only
 * its own loop. NBD clients open one to a few connections, so the rings stay few.
 *
 * <p>The rules of the threaded path hold here too. Completions never wait: they only push and
 * write an eventfd. Back-pressure stops receiving: a request that finds no budget, no free request
 * object or no pages is held and no receive is posted until requests come back (the loop recycles
 * them after their replies are sent) or, for pages that other connections hold, a 1 ms timeout
 * retries. Each reply goes out whole and a request is recycled only when all of its reply has been
 * sent (partial sends continue where they stopped); after a failed send the replies are dropped
 * but requests are still recycled. The socket is a registered file of the ring, so that a
 * {@code close(2)} from another thread (reply or close timeout) cannot point a later operation at
 * a reused descriptor; {@link NbdChannel#close} shuts the socket down first, which ends the
 * operations in flight. The loop ends once every request has come back and no operation is left on
 * the ring, so no page, request or descriptor outlives it.
 */
final class NbdUringLoop
        implements ReplySink, ReplyProgress, ReplyOutput, CompletionHandler
{
    private static final Logger log = LoggerFactory.getLogger(NbdUringLoop.class);

    /**
     * SQEs for the loop's own operations, at most one of each kind at once: receive (and its cancel),
     * send, wakeup, timeout, and those of spliced READs (a splice per pipe) and WRITEs (a poll of the
     * socket and a drain for the pipe receiving, a drain or an fsync for the other).
     */
    private static final int RING_ENTRIES = 16;
    /** {@link #limitUnsent}: measured against 16, 64, 128 and 512 KiB with nbdcopy and fio over TCP. */
    static final int UNSENT_LIMIT = 32 << 10;
    /** Most SQEs for a lent file's operations; more in flight are held until the next turn. */
    private static final int MAX_LENT_ENTRIES = 1024;
    private static final int FIXED_FILE = 1;
    /** Linux's IOV_MAX: most iovecs one SENDMSG or RECVMSG takes. */
    private static final int IOV_MAX = 1024;
    private static final long RETRY_NANOS = 1_000_000L;
    /** Requests a connection must start one at a time before its loop polls ({@link BusyPoll}). */
    private static final int SHALLOW_STARTS = 64;
    /**
     * The longest request after which the loop may poll. A longer one's own transfer takes tens of
     * microseconds, so the wake-up that polling saves is lost in it; and a client streaming such
     * requests looks like one at a time once the loop answers each before the next arrives (a
     * buffered WRITE written in the loop's thread), while its spin takes a core from that client:
     * nbdcopy writing in over 2 connections on 2 CPUs had 18 % of the server's samples spinning.
     */
    private static final long POLL_MAX_LENGTH = 128 * 1024;
    private static final int FIXED_SOCKET = 0;

    private static final long RECV = 1;
    private static final long RECV_PAYLOAD = 2;
    private static final long SEND = 3;
    private static final long WAKEUP = 4;
    private static final long TIMEOUT = 5;
    private static final long RECV_MULTISHOT = 6;
    private static final long RECV_CANCEL = 7;
    /**
     * With the multishot receive armed, a WRITE payload with more than this left to arrive is received
     * single-shot straight into its pages (the receive is cancelled for it, and armed again after);
     * less is copied out of the provided buffers it arrives in.
     */
    static final int DIRECT_PAYLOAD = 64 << 10;

    private final NbdChannel channel;
    private final BlockDevice device;
    private final String peer;
    private final NbdConnectionCounters counters;
    private final NbdRequestReader requests;
    private final NbdRequestPool pool;
    private final NbdSubmitter submitter;
    private final BlockStatus blockStatus;
    private final Thread thread;
    private final Ring ring;
    private final int eventFd;
    /** The device's file, when it takes operations on this ring; else null. */
    private final RingBorrower borrower;
    /** The pool's pinned slabs, registered on the ring for the borrower; none without {@code registered-bytes}. */
    private final FixedBuffers fixedBuffers;
    /** This ring as lent to {@link #borrower} while the loop runs; null when not lent. */
    private LentRing lent;
    /** Large READs from the file to the socket by splice; null when the file or the kernel does not allow it. */
    private final SplicedReads spliced;
    private final long busyPollNanos;
    /** Large WRITE payloads from the socket into the file by splice; null when the file or the kernel does not allow it. */
    private final SplicedWrites splicedWrites;

    /** Native scratch: the send iovecs and msghdr, the payload iovecs and msghdr, the eventfd words, the timeout. */
    private final ByteBuffer scratch;
    private final long sendIovecs;
    private final long sendMsghdr;
    private final long recvIovecs;
    private final long recvMsghdr;
    private final long eventWord;
    private final long wakeWord;
    private final long timespec;
    private final ByteBuffer input;
    private final long inputAddress;
    /** The multishot receive into provided buffers; null when requests are received single-shot into {@link #input}. */
    private MultishotReceiver multishot;

    /** Replies of requests completed on device threads, linked through {@link NbdRequest#next}. */
    private final AtomicReference<NbdRequest> remote = new AtomicReference<>();
    /** Device threads between their push and their eventfd write; the eventfd is closed only at 0. */
    private final AtomicInteger waking = new AtomicInteger();
    private volatile boolean eventFdClosed;

    // Loop thread only from here.
    /** Requests started, and the number of the last that found another in flight or was long: whether to poll. */
    private long started;
    private long lastDeepStart;
    /** Whether polling or sleeping answers this client's one-at-a-time stretches sooner, measured. */
    private final PollTuner pollTuner = new PollTuner();
    private boolean recvPosted;
    private boolean sendPosted;
    private boolean wakeupPosted;
    private boolean timeoutPosted;
    private boolean inputEnded;
    private boolean broken;
    /** A header was parsed but no request object was free for it. */
    private boolean headerPending;
    /** A request that waits for budget or pages. */
    private NbdRequest waiting;
    /** A WRITE whose payload is being received into its pages. */
    private NbdRequest payload;
    private boolean payloadReady;
    private long skipLeft;

    /** Replies ready and not yet in a send batch. */
    private NbdRequest pendingHead;
    private NbdRequest pendingTail;
    /** The send batch: its requests in order, and its buffers. */
    private NbdRequest sendingHead;
    private NbdRequest sendingTail;
    private long[] sendAddress = new long[256];
    private int[] sendLength = new int[256];
    private int sendCount;
    private int sendIndex;
    private int sendOffset;
    private long sendTotal;
    private long sentBytes;

    // Read by the reply watchdog.
    private volatile long progress;
    private volatile boolean busy;

    private NbdUringLoop(
            NbdChannel channel,
            BlockDevice device,
            int transmissionFlags,
            boolean structuredReplies,
            boolean baseAllocation,
            PagePool pagePool,
            int maxInflightBytes,
            int maxInflightRequests,
            String peer,
            NbdConnectionCounters counters,
            Ring ring,
            int eventFd,
            RingBorrower borrower,
            FixedBuffers fixedBuffers,
            long spliceMin,
            long spliceWriteMin,
            boolean multishotReceive,
            long busyPollNanos)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.device = requireNonNull(device, "device is null");
        this.peer = requireNonNull(peer, "peer is null");
        this.counters = requireNonNull(counters, "counters is null");
        this.ring = requireNonNull(ring, "ring is null");
        this.eventFd = eventFd;
        this.borrower = borrower;
        this.fixedBuffers = requireNonNull(fixedBuffers, "fixedBuffers is null");
        this.requests = new NbdRequestReader(channel, device, transmissionFlags, structuredReplies, baseAllocation);
        this.pool = new NbdRequestPool(pagePool, maxInflightBytes, maxInflightRequests);
        this.thread = Thread.currentThread();
        this.submitter = new NbdSubmitter(device, this, thread);
        this.blockStatus = new BlockStatus(device);
        this.scratch = ByteBuffer.allocateDirect(2 * 16 * IOV_MAX + 2 * 64 + 16 + 16).order(ByteOrder.nativeOrder());
        long base = UnsafeAccess.address(scratch);
        this.sendIovecs = base;
        this.recvIovecs = base + 16 * IOV_MAX;
        this.sendMsghdr = base + 2 * 16 * IOV_MAX;
        this.recvMsghdr = sendMsghdr + 64;
        this.eventWord = recvMsghdr + 64;
        this.wakeWord = eventWord + 8;
        this.timespec = wakeWord + 8;
        scratch.putLong((int) (wakeWord - base), 1);
        scratch.putLong((int) (timespec - base), 0);
        scratch.putLong((int) (timespec - base + 8), RETRY_NANOS);
        this.input = requests.input();
        this.inputAddress = UnsafeAccess.address(input);
        if (multishotReceive) {
            try {
                // the input buffer is not used for single-shot receives then: it becomes the provided buffers
                this.multishot = MultishotReceiver.open(ring, FIXED_SOCKET, IoUring.IOSQE_FIXED_FILE, RECV_MULTISHOT, RECV_CANCEL, input);
            }
            catch (NativeIoException | RuntimeException e) {
                log.debug("{}: single-shot receive: no provided buffers: {}", peer, e.toString());
            }
        }
        this.spliced = splicedReads(spliceMin);
        // Not over an O_DIRECT file: there the waits are the disk's, and watching measured slower (docs/nbd.md, "Busy polling").
        BackingFile file = device.backingFile();
        this.busyPollNanos = file == null || file.capabilities().logicalBlockSize() == 1 ? busyPollNanos : 0;
        this.splicedWrites = splicedWrites(spliceWriteMin);
    }

    /**
     * Zero-copy READs where they are safe and worth it: the file is the io_uring backend's, with
     * nothing between it and the device that could change the bytes (it is a registered file of this
     * ring), buffered (an {@code O_DIRECT} file would be read through a bounce buffer in the kernel,
     * and its reads stay on the pages), and the kernel knows {@code IORING_OP_SPLICE}.
     */
    private SplicedReads splicedReads(long spliceMin)
    {
        if (borrower == null || spliceMin <= 0 || !ring.isSupported(IoUring.OP_SPLICE)
                || device.backingFile().capabilities().logicalBlockSize() != 1) {
            return null;
        }
        SplicedReads reads = new SplicedReads(ring, device, new SpliceHooks(), FIXED_FILE, FIXED_SOCKET, spliceMin);
        String cause = reads.openPipes();
        if (cause != null) {
            log.debug("{}: READs are not spliced: {}", peer, cause);
            return null;
        }
        return reads;
    }

    /**
     * Zero-copy WRITEs on the same condition as {@link #splicedReads}: an {@code O_DIRECT} file needs
     * aligned user memory for its writes (its WRITEs stay on the pages).
     */
    private SplicedWrites splicedWrites(long spliceWriteMin)
    {
        if (borrower == null || spliceWriteMin <= 0 || !ring.isSupported(IoUring.OP_SPLICE)
                || device.backingFile().capabilities().logicalBlockSize() != 1) {
            return null;
        }
        SplicedWrites writes = new SplicedWrites(ring, device, new SplicedWriteHooks(), FIXED_FILE, FIXED_SOCKET,
                UnsafeAccess.fd(channel.socket()), borrower.fileDescriptor(), spliceWriteMin);
        String cause = writes.openPipes();
        if (cause != null) {
            log.debug("{}: WRITEs are not spliced: {}", peer, cause);
            return null;
        }
        return writes;
    }

    /** WRITEs spliced from the socket into the file so far (the connection's close line); loop thread. */
    long splicedWrites()
    {
        return splicedWrites == null ? 0 : splicedWrites.writes();
    }

    /** READs spliced from the file to the socket so far (the connection's close line); loop thread. */
    long splicedReads()
    {
        return spliced == null ? 0 : spliced.reads();
    }

    /** Requests read and not yet answered (jloop status); any thread. */
    int inFlight()
    {
        return pool.inUse();
    }

    /** Why no connection can use the loop here, or {@code null} when they can. */
    static String unavailabilityCause()
    {
        if (!IoUring.isAvailable()) {
            return IoUring.unavailabilityCause();
        }
        return UnsafeAccess.unavailabilityCause();
    }

    /**
     * The loop for {@code channel}, made on the connection's thread, which then runs it; {@code null}
     * when the channel is not a plain socket (TLS, pipes) or its ring cannot be set up: the caller
     * serves it with threads then.
     */
    static NbdUringLoop open(
            NbdChannel channel,
            BlockDevice device,
            int transmissionFlags,
            boolean structuredReplies,
            boolean baseAllocation,
            PagePool pagePool,
            int maxInflightBytes,
            int maxInflightRequests,
            String peer,
            NbdConnectionCounters counters,
            long spliceMin,
            long spliceWriteMin,
            boolean multishotReceive,
            long busyPollNanos)
    {
        if (channel.socket() == null || unavailabilityCause() != null) {
            return null;
        }
        int socketFd = UnsafeAccess.fd(channel.socket());
        if (socketFd < 0) {
            return null;
        }
        limitUnsent(channel, socketFd, peer, UNSENT_LIMIT);
        BackingFile file = device.backingFile();
        RingBorrower borrower = file instanceof RingBorrower ? (RingBorrower) file : null;
        FixedBuffers fixedBuffers = FixedBuffers.NONE;
        Ring ring = null;
        int eventFd = -1;
        try {
            if (borrower != null) {
                // room for the file's operations of every request the connection may have in flight
                int fileEntries = Math.min(MAX_LENT_ENTRIES, Math.min(maxInflightRequests, Math.max(1, file.capabilities().queueDepth())));
                ring = openRing(RING_ENTRIES + fileEntries);
                ring.registerFiles(socketFd, borrower.fileDescriptor());
                fixedBuffers = registerPinnedPages(ring, pagePool, peer);
            }
            else {
                ring = openRing(RING_ENTRIES);
                ring.registerFiles(socketFd);
            }
            eventFd = Errors.check("eventfd", Posix.eventfd(0, Posix.EFD_CLOEXEC));
            return new NbdUringLoop(channel, device, transmissionFlags, structuredReplies, baseAllocation,
                    pagePool, maxInflightBytes, maxInflightRequests, peer, counters, ring, eventFd, borrower, fixedBuffers, spliceMin,
                    spliceWriteMin, multishotReceive, busyPollNanos);
        }
        catch (NativeIoException | RuntimeException e) {
            log.debug("{}: io_uring loop not used: {}", peer, e.toString());
            if (ring != null) {
                ring.close();
            }
            if (eventFd >= 0) {
                Posix.close(eventFd);
            }
            return null;
        }
    }

    /**
     * Caps the bytes a TCP socket takes beyond what it has sent ({@code TCP_NOTSENT_LOWAT}). Without it a
     * large READ reply goes into the socket whole, and the client, when it acknowledges, sends the rest
     * on the loop's behalf: on loopback, every acknowledgement the client makes then runs the transmit
     * path and wakes the loop. With the cap the loop sends the rest itself as room opens (the ring polls
     * the socket for it): nbdcopy reading out over TCP spent a quarter less CPU, and went from 0.8x
     * nbdkit's speed to 1.2-1.5x (docs/nbd.md, "The connection's socket"). Small replies never reach
     * the cap. The threads loop's blocking writes would wait at it, so plain connections there go
     * without; TLS connections have one of their own ({@link NbdOptionChannel#TLS_UNSENT_LIMIT}).
     */
    static void limitUnsent(NbdChannel channel, int socketFd, String peer, int limit)
    {
        try {
            if (!(channel.socket().getLocalAddress() instanceof InetSocketAddress)) {
                return;
            }
        }
        catch (IOException e) {
            return;
        }
        int res = Posix.setSocketOption(socketFd, Posix.IPPROTO_TCP, Posix.TCP_NOTSENT_LOWAT, limit);
        if (res < 0) {
            log.debug("{}: TCP_NOTSENT_LOWAT not set: {}", peer, Errors.describe(res));
        }
    }

    /**
     * The connection's ring. Its work items (what completes a receive, a send, a file read) run when the
     * loop enters the kernel ({@code COOP_TASKRUN}), instead of the kernel interrupting the loop wherever
     * it runs: the loop enters on every turn anyway, and each interruption costs the thread that wakes it
     * (the client's send, a disk's completion) an inter-processor interrupt, in a virtual machine an exit
     * to the host. 4 KiB reads at iodepth 32 ran 1.4x faster with it, 128 KiB reads 1.5x (docs/nbd.md,
     * "The connection's ring"). {@code TASKRUN_FLAG} shows busy polling that work waits. Kernels before
     * 5.19 know neither flag: there the ring is set up without them.
     */
    private static Ring openRing(int entries)
            throws NativeIoException
    {
        try {
            return Ring.builder(entries).flags(IoUring.SETUP_COOP_TASKRUN | IoUring.SETUP_TASKRUN_FLAG).open();
        }
        catch (NativeIoException e) {
            if (e.errno() != Errors.EINVAL) {
                throw e;
            }
            return Ring.builder(entries).open();
        }
    }

    /**
     * Registers the page pool's pinned slabs ({@code registered-bytes}) as the ring's fixed buffers, for
     * the file's READ_FIXED/WRITE_FIXED on the lent ring. Only pinned ones: a slab the pool could give
     * back while registered would stay pinned under the ring, and a new slab at its address would not
     * be the memory the kernel reads into. Where the kernel refuses (RLIMIT_MEMLOCK), none.
     */
    private static FixedBuffers registerPinnedPages(Ring ring, PagePool pagePool, String peer)
    {
        List<ByteBuffer> slabs = pagePool.pinnedSlabs();
        if (slabs.isEmpty()) {
            return FixedBuffers.NONE;
        }
        long[] addresses = new long[slabs.size()];
        long[] lengths = new long[slabs.size()];
        for (int i = 0; i < addresses.length; i++) {
            addresses[i] = DirectMemory.address(slabs.get(i));
            lengths[i] = slabs.get(i).capacity();
        }
        try {
            ring.registerBuffers(addresses, lengths);
            return new FixedBuffers(addresses, lengths);
        }
        catch (NativeIoException e) {
            log.debug("{}: fixed buffers not registered on the connection's ring: {}", peer, e.getMessage());
            return FixedBuffers.NONE;
        }
    }

    /**
     * Serves requests until NBD_CMD_DISC, end of input or an error, then waits until every request in
     * flight has completed and its reply was sent (or dropped), and no operation is left on the ring,
     * before returning. Closes the ring.
     */
    void run()
            throws IOException
    {
        try {
            lendRing();
            postWakeup();
            pump();
            while (!done()) {
                enterAndWait();
                reapAndPump();
            }
        }
        catch (IOException | RuntimeException e) {
            // Stop receiving and sending: what is in flight in the device still comes back.
            inputEnded = true;
            broken = true;
            if (spliced != null) {
                spliced.abort();
            }
            if (splicedWrites != null) {
                splicedWrites.abort();
            }
            drain();
            throw e;
        }
        finally {
            close();
        }
    }

    private boolean done()
    {
        return inputEnded && !receiving() && !sendPosted && !timeoutPosted && payload == null
                && pendingHead == null && remote.get() == null && pool.allReturned()
                && (lent == null || (lent.inFlight() == 0 && !lent.hasHeld()))
                && (spliced == null || spliced.idle()) && (splicedWrites == null || splicedWrites.idle());
    }

    /** Whether a receive of ours is on the ring. */
    private boolean receiving()
    {
        return recvPosted || (multishot != null && multishot.busy());
    }

    /** Lends the ring to the device's file for the requests of this connection, if the file takes it. */
    private void lendRing()
    {
        if (borrower == null) {
            return;
        }
        LentRing ring = new LentRing(this.ring, thread, RING_ENTRIES, FIXED_FILE, fixedBuffers);
        if (borrower.borrow(ring)) {
            lent = ring;
        }
    }

    /** After a failure: ends what is on the ring and waits for the device's completions, dropping their replies. */
    private void drain()
    {
        shutdownSocket();
        try {
            if (waiting != null) {
                pool.recycle(waiting);
                waiting = null;
            }
            pump();
            while (!done()) {
                enterAndWait();
                reapAndPump();
            }
        }
        catch (IOException | RuntimeException e) {
            log.error("{}: io_uring loop cannot end cleanly", peer, e);
        }
    }

    private void enterAndWait()
            throws NativeIoException
    {
        if (lent != null) {
            // File operations that found no room: write them now, entering as often as the SQ fills.
            while (lent.prepareHeld()) {
                int res = ring.submit();
                if (res == -Errors.EAGAIN || res == -Errors.EBUSY) {
                    break;
                }
            }
        }
        if (pool.inUse() == 0 && mayPoll() && pollTuner.polling()) {
            // A client that sends a request at a time, and all its requests answered: its next one is a
            // few microseconds away, and watching for it can cost less than sleeping and being woken
            // (BusyPoll), where a core is free to watch; the tuner measures whether it does here. A client
            // with more in flight keeps the loop busy without it.
            int res = ring.submit();
            if (res == -Errors.EAGAIN || res == -Errors.EBUSY) {
                // the kernel holds CQEs back: the loop reaps them and pumps what they make ready, then comes back
                return;
            }
            if (BusyPoll.awaitCompletion(ring, busyPollNanos)) {
                return;
            }
        }
        // -EAGAIN or -EBUSY: the kernel holds CQEs back or is short of memory, and nothing was waited for.
        // Submitting again after a reap alone could sleep on a client that waits for a reply which only
        // the pump sends, so the loop reaps, pumps and comes back, as after any wait.
        ring.submitAndWait(1);
    }

    /** Polling is on, and the client has sent its last {@value #SHALLOW_STARTS} requests one at a time, none of them long. */
    private boolean mayPoll()
    {
        return busyPollNanos > 0 && started - lastDeepStart > SHALLOW_STARTS;
    }

    private void reapAndPump()
            throws IOException
    {
        ring.reap(this);
        takeRemote();
        pump();
    }

    // ---- completions of the device (ReplySink)

    @Override
    public void queue(NbdRequest request)
    {
        waking.incrementAndGet();
        try {
            NbdRequest head;
            do {
                head = remote.get();
                request.next = head;
            }
            while (!remote.compareAndSet(head, request));
            if (head == null && !eventFdClosed) {
                // The first of a batch wakes the loop; the others find it awake or about to drain them.
                Posix.write(eventFd, wakeWord, 8);
            }
        }
        finally {
            waking.decrementAndGet();
        }
    }

    @Override
    public void readerReplies(NbdRequest first, NbdRequest last, int count)
    {
        appendPending(first, last);
    }

    /** Takes the replies device threads pushed, in completion order (the stack holds the newest first). */
    private void takeRemote()
    {
        NbdRequest request = remote.getAndSet(null);
        if (request == null) {
            return;
        }
        NbdRequest last = request;
        NbdRequest reversed = null;
        while (request != null) {
            NbdRequest next = request.next;
            request.next = reversed;
            reversed = request;
            request = next;
        }
        appendPending(reversed, last);
    }

    private void appendPending(NbdRequest first, NbdRequest last)
    {
        last.next = null;
        if (pendingTail == null) {
            pendingHead = first;
        }
        else {
            pendingTail.next = first;
        }
        pendingTail = last;
    }

    // ---- the ring's completions

    @Override
    public void handle(long userData, int res, int flags)
    {
        if ((userData & LentRing.BORROWED) != 0) {
            // the device's file I/O: completes the kiocb, and the request's reply joins this thread's replies
            lent.complete(userData, res, flags);
        }
        else if (userData == RECV) {
            recvPosted = false;
            received(res);
        }
        else if (userData == RECV_PAYLOAD) {
            recvPosted = false;
            receivedPayload(res);
        }
        else if (userData == SEND) {
            sendPosted = false;
            sent(res);
        }
        else if (userData == WAKEUP) {
            wakeupPosted = false;
            if (!eventFdClosed) {
                postWakeup();
            }
        }
        else if (userData == TIMEOUT) {
            timeoutPosted = false;
        }
        else if (userData >= SplicedReads.FIRST && userData < SplicedReads.LIMIT) {
            spliced.handle(userData, res);
        }
        else if (userData >= SplicedWrites.FIRST && userData < SplicedWrites.LIMIT) {
            splicedWrites.handle(userData, res);
        }
        else if (userData == RECV_MULTISHOT) {
            multishot.completed(res, flags);
            if (multishot.unsupported()) {
                log.debug("{}: multishot receive refused, receiving single-shot", peer);
                multishot.close();
                multishot = null;
            }
        }
        else if (userData == RECV_CANCEL) {
            if (multishot != null) {
                multishot.cancelled();
            }
        }
    }

    private void received(int res)
    {
        if (res > 0) {
            input.limit(input.limit() + res);
            return;
        }
        if (res == -Errors.EAGAIN || res == -Errors.EINTR) {
            return;
        }
        if (res == 0) {
            if (input.hasRemaining() || skipLeft > 0) {
                log.debug("{}: client closed the connection in the middle of a request", peer);
            }
            else {
                log.debug("{}: end of input without NBD_CMD_DISC", peer);
            }
        }
        else {
            log.debug("{}: receive failed: {}", peer, Errors.newIOException("recv", res).getMessage());
        }
        endInput();
    }

    private void receivedPayload(int res)
    {
        NbdRequest request = payload;
        if (res > 0) {
            for (int i = 0; i < request.nrPages && res > 0; i++) {
                ByteBuffer page = request.pages[i].buffer();
                int n = Math.min(page.remaining(), res);
                page.position(page.position() + n);
                res -= n;
            }
            payloadReady = !request.pages[request.nrPages - 1].buffer().hasRemaining();
            return;
        }
        if (res == -Errors.EAGAIN || res == -Errors.EINTR) {
            return;
        }
        log.debug("{}: client closed the connection in the middle of a WRITE payload", peer);
        // Never submitted: still ours to give back.
        payload = null;
        pool.recycle(request);
        endInput();
    }

    private void endInput()
    {
        inputEnded = true;
        if (waiting != null) {
            pool.recycle(waiting);
            waiting = null;
        }
    }

    // ---- receiving and submitting

    /** Works through what is buffered, submits what is ready to send, and posts the next receive. */
    private void pump()
            throws IOException
    {
        try {
            parse();
        }
        finally {
            submitter.unplug();
        }
        startSend();
        postReceive();
        busy = sendPosted || pendingHead != null || (spliced != null && spliced.sending());
    }

    private void parse()
            throws IOException
    {
        while (!inputEnded) {
            if (splicedWrites != null && splicedWrites.holdsInput()) {
                // the socket and the input buffer belong to a spliced WRITE's payload
                return;
            }
            if (payload != null) {
                if (!payloadReady && (multishot == null || !multishot.takePayload(payload))) {
                    return;
                }
                NbdRequest request = payload;
                payload = null;
                payloadReady = false;
                submitter.plug();
                submitter.submit(request);
                continue;
            }
            if (skipLeft > 0) {
                skipLeft = multishot != null ? multishot.skip(skipLeft) : requests.skipBuffered(skipLeft);
                if (skipLeft > 0) {
                    return;
                }
            }
            if (waiting != null) {
                if (!reserve(waiting)) {
                    return;
                }
                NbdRequest request = waiting;
                waiting = null;
                submitter.plug();
                afterReserve(request);
                continue;
            }
            if (!headerPending) {
                if (!hasRequest()) {
                    return;
                }
                if ((multishot != null ? multishot.parseHeader(requests) : requests.parseHeader()) == CMD_DISC) {
                    log.debug("{}: NBD_CMD_DISC", peer);
                    inputEnded = true;
                    return;
                }
                headerPending = true;
            }
            NbdRequest request = pool.poll();
            if (request == null) {
                // Every request object is in flight: one comes back when its reply is sent.
                return;
            }
            headerPending = false;
            requests.describe(request);
            counters.request(request.type == CMD_READ || request.type == CMD_WRITE ? request.length : 0);
            submitter.plug();
            try {
                start(request);
            }
            catch (RuntimeException e) {
                if (waiting != request && payload != request) {
                    pool.recycle(request);
                }
                throw e;
            }
        }
    }

    /** As the threaded path's {@code NbdTransmission.start}, but what would wait is held instead. */
    private void start(NbdRequest request)
    {
        started++;
        if (pool.inUse() > 1 || request.length > POLL_MAX_LENGTH) {
            lastDeepStart = started;
            pollTuner.interrupted();
        }
        else if (mayPoll()) {
            pollTuner.started(System.nanoTime());
        }
        int type = request.type;
        long length = request.length;
        int error = requests.validate(request);
        if (error != 0) {
            log.debug("{}: {} offset={} length={} flags=0x{} refused with NBD error {}",
                    peer, NbdProtocol.commandName(type), request.offset, length, Integer.toHexString(request.flags), error);
            if (type == CMD_WRITE) {
                skipLeft = length;
            }
            request.error = error;
            submitter.reply(request);
            return;
        }
        if (type == CMD_BLOCK_STATUS) {
            blockStatus.answer(request);
            submitter.reply(request);
            return;
        }
        if (length == 0 && type != CMD_FLUSH) {
            submitter.reply(request);
            return;
        }
        if (type == CMD_READ && request.structured) {
            StructuredRead read = request.read;
            read.plan(request.offset, request.length, device, (request.flags & CMD_FLAG_DF) != 0, submitter.knownData());
            if (read.span() == 0) {
                submitter.reply(request);
                return;
            }
            if (spliced != null && spliced.takes(request)) {
                spliced.add(request);
                return;
            }
            if (!pool.fits(read.span())) {
                request.error = NBD_ENOMEM;
                submitter.reply(request);
                return;
            }
        }
        else if (type == CMD_READ || type == CMD_WRITE) {
            if (spliced != null && spliced.takes(request)) {
                spliced.add(request);
                return;
            }
            if (splicedWrites != null && multishot == null && !recvPosted && splicedWrites.takes(request, input.remaining())) {
                // the payload bytes received with the header are written from the input buffer, the rest spliced
                int head = (int) Math.min(input.remaining(), length);
                splicedWrites.start(request, inputAddress + input.position(), head);
                input.position(input.position() + head);
                return;
            }
            if (!pool.fits(length)) {
                if (type == CMD_WRITE) {
                    skipLeft = length;
                }
                request.error = NBD_ENOMEM;
                submitter.reply(request);
                return;
            }
        }
        else {
            submitter.submit(request);
            return;
        }
        if (!reserve(request)) {
            waiting = request;
            return;
        }
        afterReserve(request);
    }

    /** Takes budget and pages for a READ or WRITE if they are there; else arms a retry for pages other connections hold. */
    private boolean reserve(NbdRequest request)
    {
        long length = request.type == CMD_READ && request.structured ? request.read.span() : request.length;
        if (pool.tryReserve(request, length)) {
            return true;
        }
        if (!timeoutPosted && ring.prep(IoUring.OP_TIMEOUT, 0, -1, 0, timespec, 1, 0, TIMEOUT, 0)) {
            timeoutPosted = true;
        }
        return false;
    }

    private void afterReserve(NbdRequest request)
    {
        if (request.type == CMD_READ && request.structured) {
            submitter.submitStructuredRead(request);
            return;
        }
        if (request.type == CMD_WRITE && !takeBufferedPayload(request)) {
            payload = request;
            payloadReady = false;
            return;
        }
        submitter.submit(request);
    }

    private boolean hasRequest()
    {
        return multishot != null ? multishot.hasRequest() : requests.hasRequest();
    }

    private boolean takeBufferedPayload(NbdRequest request)
    {
        if (multishot == null) {
            return requests.takeBufferedPayload(request);
        }
        request.preparePageBuffers();
        return multishot.takePayload(request);
    }

    /** Posts the receive the parser needs: the rest of a WRITE payload into its pages, or more input. */
    private void postReceive()
    {
        if (inputEnded && multishot != null) {
            // NBD_CMD_DISC or a failure: nothing more is read, and the loop ends only once the receive has
            multishot.cancel();
        }
        if (recvPosted || inputEnded) {
            return;
        }
        if (splicedWrites != null && splicedWrites.holdsInput()) {
            // the payload goes from the socket into the file; the input buffer may not move under its head write
            return;
        }
        if (multishot != null) {
            postMultishotReceive();
            return;
        }
        if (payload != null) {
            if (!payloadReady) {
                postPayloadReceive();
            }
            return;
        }
        if (waiting != null || headerPending || (skipLeft == 0 && requests.hasRequest())) {
            // Back-pressure: nothing is read until the held request can go on.
            return;
        }
        if (input.position() > 0 && (input.limit() == input.capacity() || !input.hasRemaining())) {
            input.compact().flip();
        }
        int limit = input.limit();
        if (ring.prep(IoUring.OP_RECV, IoUring.IOSQE_FIXED_FILE, FIXED_SOCKET, 0, inputAddress + limit, input.capacity() - limit, 0, RECV, 0)) {
            recvPosted = true;
        }
    }

    /**
     * With the multishot receive: arms it when the parser needs bytes, and ends input once it has ended
     * for good and the parser needs bytes still. A large WRITE payload is received into its pages
     * single-shot, with the multishot receive cancelled until it is in.
     */
    private void postMultishotReceive()
    {
        if (payload != null) {
            if (payloadReady) {
                return;
            }
            // parse() has taken every buffered byte into the payload
            if (multishot.armed()) {
                if (payloadLeft(payload) > DIRECT_PAYLOAD) {
                    multishot.cancel();
                }
                return;
            }
            if (multishot.busy()) {
                return;
            }
            if (multishot.end() != MultishotReceiver.NOT_ENDED) {
                log.debug("{}: client closed the connection in the middle of a WRITE payload", peer);
                NbdRequest request = payload;
                payload = null;
                pool.recycle(request);
                endInput();
                return;
            }
            postPayloadReceive();
            return;
        }
        if (waiting != null || headerPending || (skipLeft == 0 && multishot.hasRequest())) {
            // Back-pressure: the receive is not armed again until the held request can go on.
            return;
        }
        // The parser needs bytes: the few buffered, less than a header, free their buffers.
        multishot.stashPartial();
        if (multishot.busy()) {
            return;
        }
        int end = multishot.end();
        if (end != MultishotReceiver.NOT_ENDED) {
            if (end == 0) {
                if (multishot.buffered() > 0 || skipLeft > 0) {
                    log.debug("{}: client closed the connection in the middle of a request", peer);
                }
                else {
                    log.debug("{}: end of input without NBD_CMD_DISC", peer);
                }
            }
            else {
                log.debug("{}: receive failed: {}", peer, Errors.newIOException("recv", end).getMessage());
            }
            endInput();
            return;
        }
        multishot.arm();
    }

    private static long payloadLeft(NbdRequest request)
    {
        long left = 0;
        for (int i = 0; i < request.nrPages; i++) {
            left += request.pages[i].buffer().remaining();
        }
        return left;
    }

    private void postPayloadReceive()
    {
        NbdRequest request = payload;
        int count = 0;
        for (int i = 0; i < request.nrPages && count < IOV_MAX; i++) {
            ByteBuffer page = request.pages[i].buffer();
            if (page.hasRemaining()) {
                scratch.putLong(iovec(recvIovecs, count), request.pages[i].address() + page.position());
                scratch.putLong(iovec(recvIovecs, count) + 8, page.remaining());
                count++;
            }
        }
        msghdr(recvMsghdr, recvIovecs, count);
        if (ring.prep(IoUring.OP_RECVMSG, IoUring.IOSQE_FIXED_FILE, FIXED_SOCKET, 0, recvMsghdr, 1, 0, RECV_PAYLOAD, 0)) {
            recvPosted = true;
        }
    }

    private void postWakeup()
    {
        if (ring.prep(IoUring.OP_READ, 0, eventFd, 0, eventWord, 8, 0, WAKEUP, 0)) {
            wakeupPosted = true;
        }
    }

    // ---- sending

    /**
     * Gathers every reply ready into one send batch and posts its first SENDMSG, unless one is under
     * way or a spliced READ's data is going out. A spliced READ's header ends a batch: its data
     * follows it on the socket before any other reply.
     */
    private void startSend()
    {
        if (sendPosted || sendingHead != null || pendingHead == null || (spliced != null && spliced.sending())) {
            return;
        }
        NbdRequest batch = pendingHead;
        NbdRequest tail = pendingTail;
        pendingHead = null;
        pendingTail = null;
        if (broken) {
            recycleAll(batch);
            return;
        }
        sendCount = 0;
        sendIndex = 0;
        sendOffset = 0;
        sendTotal = 0;
        sentBytes = 0;
        sendingHead = batch;
        for (NbdRequest request = batch; request != null; request = request.next) {
            add(request);
            request.sendEnd = sendTotal;
            sendingTail = request;
            if (request.spliced && request.next != null) {
                // the rest waits for the spliced data
                pendingHead = request.next;
                pendingTail = tail;
                request.next = null;
                break;
            }
        }
        postSend();
    }

    private void add(NbdRequest request)
    {
        if (request.spliced) {
            gather(SplicedReads.header(request));
            return;
        }
        if (request.error != 0) {
            counters.error();
        }
        addReply(request);
    }

    /**
     * Takes the address and length of {@code buffer}'s remaining bytes at once, so an encoder may move
     * the buffer's position and limit afterwards; the bytes themselves must stay as they are until sent.
     */
    @Override
    public void gather(ByteBuffer buffer)
    {
        int length = buffer.remaining();
        if (length == 0) {
            return;
        }
        if (sendCount == sendAddress.length) {
            sendAddress = Arrays.copyOf(sendAddress, 2 * sendCount);
            sendLength = Arrays.copyOf(sendLength, 2 * sendCount);
        }
        sendAddress[sendCount] = UnsafeAccess.address(buffer) + buffer.position();
        sendLength[sendCount] = length;
        sendCount++;
        sendTotal += length;
    }

    /** Nothing to do: {@link #gather} keeps addresses, not buffers, so an encoder's reuse of a buffer's window is harmless. */
    @Override
    public void flush()
    {
    }

    private void postSend()
    {
        int count = Math.min(IOV_MAX, sendCount - sendIndex);
        for (int i = 0; i < count; i++) {
            int k = sendIndex + i;
            int skip = i == 0 ? sendOffset : 0;
            scratch.putLong(iovec(sendIovecs, i), sendAddress[k] + skip);
            scratch.putLong(iovec(sendIovecs, i) + 8, sendLength[k] - skip);
        }
        msghdr(sendMsghdr, sendIovecs, count);
        if (!ring.prep(IoUring.OP_SENDMSG, IoUring.IOSQE_FIXED_FILE, FIXED_SOCKET, 0, sendMsghdr, 1, IoUring.MSG_NOSIGNAL, SEND, 0)) {
            throw new IllegalStateException("no SQE for a send: the ring is sized for every operation at once");
        }
        sendPosted = true;
    }

    private void sent(int res)
    {
        progress++;
        if (res == -Errors.EAGAIN || res == -Errors.EINTR) {
            postSend();
            return;
        }
        if (res <= 0) {
            if (!broken) {
                broken = true;
                log.debug("{}: cannot send replies, dropping them: {}", peer,
                        res == 0 ? "no progress" : Errors.newIOException("sendmsg", res).getMessage());
                // Nobody will see the replies of further requests: stop reading them.
                shutdownInputQuietly();
            }
            if (spliced != null) {
                spliced.abort();
            }
            NbdRequest batch = sendingHead;
            sendingHead = null;
            sendingTail = null;
            recycleAll(batch);
            return;
        }
        sentBytes += res;
        long left = res;
        while (left > 0) {
            int available = sendLength[sendIndex] - sendOffset;
            if (left >= available) {
                left -= available;
                sendIndex++;
                sendOffset = 0;
            }
            else {
                sendOffset += (int) left;
                left = 0;
            }
        }
        // Replies sent whole give their pages back at once, also in the middle of a long batch.
        while (sendingHead != null && sendingHead.sendEnd <= sentBytes) {
            NbdRequest request = sendingHead;
            sendingHead = request.next;
            request.next = null;
            if (request.spliced) {
                // the last of its batch: the data follows from the pipe, and the request comes back when it is sent
                spliced.headerSent(request);
            }
            else {
                pool.recycle(request);
            }
        }
        if (sendingHead == null) {
            sendingTail = null;
            return;
        }
        postSend();
    }

    private void recycleAll(NbdRequest first)
    {
        NbdRequest request = first;
        while (request != null) {
            NbdRequest next = request.next;
            request.next = null;
            pool.recycle(request);
            request = next;
        }
    }

    private int iovec(long iovecs, int i)
    {
        return (int) (iovecs - sendIovecs) + 16 * i;
    }

    /** A {@code struct msghdr} with no name and no control data over {@code count} iovecs. */
    private void msghdr(long msghdr, long iovecs, int count)
    {
        int at = (int) (msghdr - sendIovecs);
        for (int i = 0; i < 56; i += 8) {
            scratch.putLong(at + i, 0);
        }
        scratch.putLong(at + 16, iovecs);
        scratch.putLong(at + 24, count);
    }

    // ---- ReplyProgress

    @Override
    public long progress()
    {
        return progress;
    }

    @Override
    public boolean busy()
    {
        return busy && !broken;
    }

    // ---- teardown

    private void shutdownInputQuietly()
    {
        try {
            channel.shutdownInput();
        }
        catch (IOException e) {
            // not connected any more
        }
    }

    private void shutdownSocket()
    {
        shutdownInputQuietly();
        try {
            channel.socket().shutdownOutput();
        }
        catch (IOException e) {
            // not connected any more
        }
    }

    /** Ends the eventfd read (the only operation left), waits for device threads still writing the eventfd, closes. */
    private void close()
    {
        eventFdClosed = true;
        try {
            if (wakeupPosted) {
                Posix.write(eventFd, wakeWord, 8);
                while (wakeupPosted || receiving() || sendPosted || timeoutPosted || (spliced != null && spliced.posted())
                        || (splicedWrites != null && splicedWrites.posted())) {
                    enterAndWait();
                    ring.reap(this);
                }
            }
        }
        catch (NativeIoException | RuntimeException e) {
            log.error("{}: io_uring loop did not end its operations", peer, e);
        }
        while (waking.get() > 0) {
            Thread.onSpinWait();
        }
        if (lent != null) {
            if (lent.inFlight() > 0 || lent.hasHeld()) {
                // Not expected: done() waits for them. Their slots stay taken rather than reused under the kernel.
                log.error("{}: io_uring loop closed with file operations in flight: {}", peer, lent);
            }
            borrower.giveBack(lent);
        }
        if (multishot != null && !multishot.busy()) {
            multishot.close();
        }
        ring.close();
        Posix.close(eventFd);
        if (spliced != null) {
            spliced.close();
        }
        if (splicedWrites != null && !splicedWrites.posted()) {
            splicedWrites.close();
        }
        if (receiving() || sendPosted) {
            // Not expected: the kernel may still use the buffers; they are leaked rather than reused.
            log.error("{}: io_uring loop closed with operations in flight", peer);
        }
    }

    /** Where spliced READs come back to the loop. */
    private final class SpliceHooks
            implements SplicedReads.Loop
    {
        @Override
        public void ready(NbdRequest request)
        {
            appendPending(request, request);
        }

        @Override
        public void done(NbdRequest request)
        {
            pool.recycle(request);
        }

        @Override
        public void failed(String why)
        {
            if (!broken) {
                broken = true;
                log.debug("{}: cannot send a spliced READ, closing: {}", peer, why);
                // The stream may hold part of a reply: the client must see it end, not wait.
                shutdownSocket();
            }
            spliced.abort();
        }

        @Override
        public void progressed()
        {
            progress++;
        }
    }

    /** Where spliced WRITEs come back to the loop. */
    private final class SplicedWriteHooks
            implements SplicedWrites.Loop
    {
        @Override
        public void written(NbdRequest request, long skip)
        {
            if (skip > 0) {
                // a failed WRITE: the rest of its payload is read and thrown away, as for a refused one
                skipLeft = skip;
            }
            appendPending(request, request);
        }

        @Override
        public void gone(NbdRequest request, String endOfInput)
        {
            if (endOfInput != null) {
                log.debug("{}: client closed the connection in the middle of a WRITE payload: {}", peer, endOfInput);
            }
            pool.recycle(request);
            if (endOfInput != null) {
                endInput();
            }
        }

        @Override
        public void progressed()
        {
            progress++;
        }
    }

    @Override
    public String toString()
    {
        return "NbdUringLoop{" + peer + ", " + ring + "}";
    }
}
