package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.posix.Errors;
import dev.jloop.posix.Posix;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static java.util.Objects.requireNonNull;

/**
 * The zero-copy READs of one io_uring connection loop (docs/nbd.md, "Zero-copy reads"): the data of a
 * large READ goes from the file's page cache into a pipe and from the pipe into the socket with
 * {@code IORING_OP_SPLICE}, so it is never copied into jloop's pages and out again; the pipe holds
 * references to the page-cache pages, and the socket takes them as they are.
 *
 * <p>One pipe per connection, one READ in it at a time, in three steps:
 * <ol>
 * <li><b>fill</b>: the file's bytes at the READ's offset are spliced into the pipe, as many as it
 *     holds ({@code F_SETPIPE_SZ}, {@link #PIPE_SIZE}), without waiting for room in it
 *     ({@code SPLICE_F_NONBLOCK}); a short splice goes on where it stopped. A READ that fits the
 *     pipe is thus wholly read before anything of its reply is sent, so a read error or a file
 *     shorter than asked is an ordinary error reply;</li>
 * <li><b>header</b>: the READ joins the loop's ready replies ({@link Loop#ready}), and the loop sends
 *     its reply header (simple, or one {@code OFFSET_DATA} chunk with {@code NBD_REPLY_FLAG_DONE}) as
 *     the last buffer of a send batch, gathered with the replies before it; nothing else goes on the
 *     socket until the data has followed;</li>
 * <li><b>drain</b>: the pipe is spliced into the socket (with {@code SPLICE_F_MORE} while more is
 *     to come), a short splice goes on where it stopped; a READ longer than the pipe then fills and
 *     drains it again. A read that fails after the header was sent ends the connection: neither
 *     reply has a way to take back announced data.</li>
 * </ol>
 * READs waiting for the pipe hold no pages and no budget, only their request object. The kernel runs
 * every splice in an io-wq worker, which may wait there for the socket; shutting the socket down ends
 * such a wait, so the loop's end still waits for every splice to complete.
 *
 * <p>Statistics: the READ is counted by the device ({@link BlockDevice#readServed}) once its last
 * byte is in the pipe, with the time since it was parsed.
 *
 * <p>Loop thread only.
 */
final class SplicedReads
{
    /** User data of this class's SQEs; the loop hands their CQEs to {@link #handle}. */
    static final long SPLICE_IN = 6;
    static final long SPLICE_OUT = 7;

    /**
     * The pipe's capacity: 1 MiB, the default {@code /proc/sys/fs/pipe-max-size}. A READ up to this
     * size is read whole before its header is sent; larger ones drain and fill the pipe in turns.
     * Where the system refuses it (an unprivileged user over {@code pipe-user-pages-soft}), the
     * pipe keeps the size it got.
     */
    static final int PIPE_SIZE = 1 << 20;
    private static final int PAGE = 4096;

    /** Where a spliced READ goes back to the loop. */
    interface Loop
    {
        /** The READ's header may be sent now (its first pipe-full is read), or its error reply when {@code request.error} is set. */
        void ready(NbdRequest request);

        /** The READ's reply is sent whole, or will never be: recycle it. */
        void done(NbdRequest request);

        /** A splice into the socket failed, or a read failed after the header was sent: the connection cannot go on. */
        void failed(String why);

        /** A splice into the socket moved bytes (the reply watchdog's progress). */
        void progressed();
    }

    private final Ring ring;
    private final BlockDevice device;
    private final Loop loop;
    private final int fileIndex;
    private final int socketIndex;
    private final long min;
    private final ByteBuffer fds = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());

    private int pipeRead = -1;
    private int pipeWrite = -1;
    private int pipeSize;

    /** READs waiting for the pipe, in order, linked through {@link NbdRequest#next}. */
    private NbdRequest waitingHead;
    private NbdRequest waitingTail;
    /** The READ whose data is in or on its way through the pipe. */
    private NbdRequest current;
    private long fileOffset;
    private long left;
    private int inPipe;
    /** The current READ is among the loop's replies (between {@link Loop#ready} and {@link #headerSent}). */
    private boolean handed;
    private boolean headerSent;
    private boolean fillPosted;
    private boolean drainPosted;
    /** The connection failed: what completes from now on is given back, nothing is started. */
    private boolean aborted;

    private long reads;
    private long bytes;

    /**
     * @param fileIndex the file among the ring's registered files
     * @param socketIndex the socket among them
     * @param min the smallest READ spliced
     */
    SplicedReads(Ring ring, BlockDevice device, Loop loop, int fileIndex, int socketIndex, long min)
    {
        this.ring = requireNonNull(ring, "ring is null");
        this.device = requireNonNull(device, "device is null");
        this.loop = requireNonNull(loop, "loop is null");
        this.fileIndex = fileIndex;
        this.socketIndex = socketIndex;
        this.min = min;
    }

    /**
     * Whether a checked READ goes this way: long enough, and with structured replies planned as one
     * data chunk (a READ with holes to skip keeps the pages and its chunks).
     */
    boolean takes(NbdRequest request)
    {
        if (request.type != CMD_READ || request.length < min || aborted) {
            return false;
        }
        return !request.structured || request.read.isOneDataChunk();
    }

    /** Queues a READ for the pipe; it comes back through {@link Loop#ready}. */
    void add(NbdRequest request)
    {
        request.spliced = true;
        request.spliceStart = System.nanoTime();
        request.next = null;
        if (waitingTail == null) {
            waitingHead = request;
        }
        else {
            waitingTail.next = request;
        }
        waitingTail = request;
        next();
    }

    /** Whether the socket belongs to a spliced READ's data now: no other reply may be sent. */
    boolean sending()
    {
        return current != null && headerSent;
    }

    /** Whether nothing is queued, in the pipe or on the ring. */
    boolean idle()
    {
        return current == null && waitingHead == null && !fillPosted && !drainPosted;
    }

    boolean posted()
    {
        return fillPosted || drainPosted;
    }

    /** READs spliced whole, and their bytes, for the connection's close line. */
    long reads()
    {
        return reads;
    }

    long bytes()
    {
        return bytes;
    }

    /**
     * The reply header of a spliced READ, the last buffer the loop gathers for it: a simple reply
     * header, or the one OFFSET_DATA chunk's header and offset.
     */
    static ByteBuffer header(NbdRequest request)
    {
        if (!request.structured) {
            return request.replyHeader.clear()
                    .putInt(SIMPLE_REPLY_MAGIC)
                    .putInt(0)
                    .putLong(request.cookie)
                    .flip();
        }
        return request.chunkHeaders().clear()
                .putInt(STRUCTURED_REPLY_MAGIC)
                .putShort((short) REPLY_FLAG_DONE)
                .putShort((short) REPLY_TYPE_OFFSET_DATA)
                .putLong(request.cookie)
                .putInt((int) (8 + request.length))
                .putLong(request.offset)
                .flip();
    }

    /** The loop sent the current READ's header: its data follows. */
    void headerSent(NbdRequest request)
    {
        if (request != current || !handed) {
            throw new IllegalStateException("header of " + request.cookie + " sent, but the pipe holds another READ");
        }
        handed = false;
        headerSent = true;
        drain();
    }

    /**
     * The connection failed: READs waiting for the pipe are given back to the loop at once; the
     * current one when its splice completes, unless it is among the loop's replies, which the loop
     * recycles with the others it drops.
     */
    void abort()
    {
        aborted = true;
        NbdRequest request = waitingHead;
        waitingHead = null;
        waitingTail = null;
        while (request != null) {
            NbdRequest next = request.next;
            request.next = null;
            request.spliced = false;
            loop.done(request);
            request = next;
        }
        if (current != null && handed) {
            current.spliced = false;
            current = null;
            handed = false;
        }
        else {
            dropCurrent();
        }
    }

    /** A CQE of {@link #SPLICE_IN} or {@link #SPLICE_OUT}. */
    void handle(long userData, int res)
    {
        if (userData == SPLICE_IN) {
            fillPosted = false;
            filled(res);
        }
        else {
            drainPosted = false;
            drained(res);
        }
    }

    /** Closes the pipe; the loop calls it once no splice is on the ring. */
    void close()
    {
        closePipe();
    }

    // ---- the steps

    private void next()
    {
        if (current != null || waitingHead == null || aborted) {
            return;
        }
        NbdRequest request = waitingHead;
        waitingHead = request.next;
        if (waitingHead == null) {
            waitingTail = null;
        }
        request.next = null;
        current = request;
        fileOffset = request.offset;
        left = request.length;
        inPipe = 0;
        handed = false;
        headerSent = false;
        fill();
    }

    private void fill()
    {
        int length = (int) Math.min(left, pipeSize - inPipe);
        if (!ring.prepSplice(fileIndex, fileOffset, pipeWrite, -1, length,
                IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_NONBLOCK | IoUring.SPLICE_F_FD_IN_FIXED, 0, SPLICE_IN)) {
            throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
        }
        fillPosted = true;
    }

    private void filled(int res)
    {
        if (aborted) {
            dropCurrent();
            return;
        }
        if (res > 0) {
            fileOffset += res;
            left -= res;
            inPipe += res;
            if (left == 0) {
                device.readServed(current.length, 0, System.nanoTime() - current.spliceStart);
            }
            else if (pipeSize - inPipe >= PAGE) {
                // short: the pipe ran out of slots for an unaligned start, or the file of bytes; go on
                fill();
                return;
            }
            pipeFull();
            return;
        }
        if (res == -Errors.EAGAIN && inPipe > 0) {
            // no room left in the pipe
            pipeFull();
            return;
        }
        if (res == -Errors.EINTR || (res == -Errors.EAGAIN && inPipe == 0)) {
            fill();
            return;
        }
        // 0: the file ends before the READ does (it shrank under the export); or the read failed
        int error = res == 0 ? -Errno.EIO : res;
        device.readServed(current.length, error, System.nanoTime() - current.spliceStart);
        NbdRequest request = current;
        if (headerSent) {
            loop.failed("read of " + request.length + " bytes at " + request.offset + " failed after its reply header was sent: "
                    + (res == 0 ? "end of file" : Errors.name(res)));
            return;
        }
        // nothing of the reply was sent: an ordinary error reply; the pipe's partial bytes go with the pipe
        closePipe();
        String cause = openPipe();
        if (cause != null) {
            loop.failed(cause);
            return;
        }
        current = null;
        request.spliced = false;
        request.error = NbdProtocol.nbdError(error);
        loop.ready(request);
        next();
    }

    private void pipeFull()
    {
        if (headerSent) {
            drain();
            return;
        }
        handed = true;
        loop.ready(current);
    }

    private void drain()
    {
        if (!ring.prepSplice(pipeRead, -1, socketIndex, -1, inPipe,
                IoUring.SPLICE_F_MOVE | (left > 0 ? IoUring.SPLICE_F_MORE : 0), IoUring.IOSQE_FIXED_FILE, SPLICE_OUT)) {
            throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
        }
        drainPosted = true;
    }

    private void drained(int res)
    {
        if (aborted) {
            dropCurrent();
            return;
        }
        if (res > 0) {
            inPipe -= res;
            loop.progressed();
            if (inPipe > 0) {
                drain();
                return;
            }
            if (left > 0) {
                fill();
                return;
            }
            NbdRequest request = current;
            current = null;
            headerSent = false;
            reads++;
            bytes += request.length;
            request.spliced = false;
            loop.done(request);
            next();
            return;
        }
        if (res == -Errors.EAGAIN || res == -Errors.EINTR) {
            drain();
            return;
        }
        loop.failed(res == 0 ? "no progress" : Errors.newIOException("splice", res).getMessage());
    }

    private void dropCurrent()
    {
        if (current != null && !posted()) {
            NbdRequest request = current;
            current = null;
            request.spliced = false;
            loop.done(request);
        }
    }

    /** Makes the pipe; returns why it cannot, or {@code null}. */
    String openPipe()
    {
        int res = Posix.pipe2(UnsafeAccess.address(fds), Posix.O_CLOEXEC);
        if (res < 0) {
            return "cannot make a pipe for zero-copy reads: " + Errors.name(res);
        }
        pipeRead = fds.getInt(0);
        pipeWrite = fds.getInt(4);
        int size = Posix.fcntl(pipeWrite, Posix.F_SETPIPE_SZ, PIPE_SIZE);
        if (size < 0) {
            size = Posix.fcntl(pipeWrite, Posix.F_GETPIPE_SZ, 0);
        }
        pipeSize = Math.max(size, PAGE);
        return null;
    }

    /** The pipe's capacity in bytes. */
    int pipeSize()
    {
        return pipeSize;
    }

    private void closePipe()
    {
        if (pipeRead >= 0) {
            Posix.close(pipeRead);
            Posix.close(pipeWrite);
            pipeRead = -1;
            pipeWrite = -1;
        }
    }
}
