package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.posix.Errors;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;

import java.nio.ByteBuffer;

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
 * <p>Two pipes per connection ({@link #PIPES}), one READ in each at a time, in three steps:
 * <ol>
 * <li><b>fill</b>: the file's bytes at the READ's offset are spliced into the pipe, as many as it
 *     holds ({@code F_SETPIPE_SZ}, {@link SplicePipe#SIZE}, 1 MiB), without waiting for room in it
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
 * While one READ's data goes into the socket, the next is read into the other pipe. READs waiting
 * for a pipe hold no pages and no budget, only their request object. The kernel runs
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
    /** User data of this class's SQEs, {@code [FIRST, LIMIT)}; the loop hands their CQEs to {@link #handle}. */
    static final long FIRST = 8;
    /**
     * Pipes per connection: while one READ's data goes into the socket, the next is read into the
     * other, so the socket does not wait for a file splice between two READs.
     */
    static final int PIPES = 2;
    static final long LIMIT = FIRST + 2 * PIPES;


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
    private final Pipe[] pipes = new Pipe[PIPES];

    /** READs waiting for a pipe, in order, linked through {@link NbdRequest#next}. */
    private NbdRequest waitingHead;
    private NbdRequest waitingTail;
    /** The connection failed: what completes from now on is given back, nothing is started. */
    private boolean aborted;

    private long reads;
    private long bytes;

    /** One pipe and the READ in it. */
    private final class Pipe
            extends SplicePipe
    {
        final int index;
        long fileOffset;
        long left;
        int inPipe;
        /** The current READ is among the loop's replies (between {@link Loop#ready} and {@link #headerSent}). */
        boolean handed;
        boolean headerSent;
        boolean fillPosted;
        boolean drainPosted;

        Pipe(int index)
        {
            this.index = index;
        }

        @Override
        boolean posted()
        {
            return fillPosted || drainPosted;
        }
    }

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
        for (int i = 0; i < PIPES; i++) {
            pipes[i] = new Pipe(i);
        }
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

    /** Queues a READ for a pipe; it comes back through {@link Loop#ready}. */
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
        for (Pipe pipe : pipes) {
            if (pipe.current != null && pipe.headerSent) {
                return true;
            }
        }
        return false;
    }

    /** Whether nothing is queued, in a pipe or on the ring. */
    boolean idle()
    {
        return waitingHead == null && SplicePipe.allIdle(pipes);
    }

    boolean posted()
    {
        return SplicePipe.anyPosted(pipes);
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

    /** The loop sent a spliced READ's header: its data follows. */
    void headerSent(NbdRequest request)
    {
        for (Pipe pipe : pipes) {
            if (pipe.current == request && pipe.handed) {
                pipe.handed = false;
                pipe.headerSent = true;
                drain(pipe);
                return;
            }
        }
        throw new IllegalStateException("header of " + request.cookie + " sent, but no pipe holds it");
    }

    /**
     * The connection failed: READs waiting for a pipe are given back to the loop at once; one in a
     * pipe when its splice completes, unless it is among the loop's replies, which the loop
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
        for (Pipe pipe : pipes) {
            if (pipe.current != null && pipe.handed) {
                pipe.current.spliced = false;
                pipe.current = null;
                pipe.handed = false;
            }
            else {
                dropCurrent(pipe);
            }
        }
    }

    /** A CQE whose user data is in {@code [FIRST, LIMIT)}. */
    void handle(long userData, int res)
    {
        Pipe pipe = pipes[(int) (userData - FIRST) / 2];
        if (((userData - FIRST) & 1) == 0) {
            pipe.fillPosted = false;
            filled(pipe, res);
        }
        else {
            pipe.drainPosted = false;
            drained(pipe, res);
        }
    }

    /** Makes the pipes; returns why it cannot, or {@code null}. */
    String openPipes()
    {
        return SplicePipe.openAll(pipes, "zero-copy reads");
    }

    /** Closes the pipes; the loop calls it once no splice is on the ring. */
    void close()
    {
        SplicePipe.closeAll(pipes);
    }

    // ---- the steps

    /** Gives waiting READs to free pipes. */
    private void next()
    {
        for (Pipe pipe : pipes) {
            if (waitingHead == null || aborted) {
                return;
            }
            if (pipe.current != null) {
                continue;
            }
            NbdRequest request = waitingHead;
            waitingHead = request.next;
            if (waitingHead == null) {
                waitingTail = null;
            }
            request.next = null;
            pipe.current = request;
            pipe.fileOffset = request.offset;
            pipe.left = request.length;
            pipe.inPipe = 0;
            pipe.handed = false;
            pipe.headerSent = false;
            fill(pipe);
        }
    }

    private void fill(Pipe pipe)
    {
        int length = (int) Math.min(pipe.left, pipe.size - pipe.inPipe);
        if (!ring.prepSplice(fileIndex, pipe.fileOffset, pipe.writeFd, -1, length,
                IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_NONBLOCK | IoUring.SPLICE_F_FD_IN_FIXED, 0, FIRST + 2L * pipe.index)) {
            throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
        }
        pipe.fillPosted = true;
    }

    private void filled(Pipe pipe, int res)
    {
        if (aborted) {
            dropCurrent(pipe);
            return;
        }
        NbdRequest request = pipe.current;
        if (res > 0) {
            pipe.fileOffset += res;
            pipe.left -= res;
            pipe.inPipe += res;
            if (pipe.left == 0) {
                device.readServed(request.length, 0, System.nanoTime() - request.spliceStart);
            }
            else if (pipe.size - pipe.inPipe >= SplicePipe.PAGE) {
                // short: the pipe ran out of slots for an unaligned start, or the file of bytes; go on
                fill(pipe);
                return;
            }
            pipeFull(pipe);
            return;
        }
        if (res == -Errors.EAGAIN && pipe.inPipe > 0) {
            // no room left in the pipe
            pipeFull(pipe);
            return;
        }
        if (res == -Errors.EINTR || (res == -Errors.EAGAIN && pipe.inPipe == 0)) {
            fill(pipe);
            return;
        }
        // 0: the file ends before the READ does (it shrank under the export); or the read failed
        int error = res == 0 ? -Errno.EIO : res;
        device.readServed(request.length, error, System.nanoTime() - request.spliceStart);
        if (pipe.headerSent) {
            loop.failed("read of " + request.length + " bytes at " + request.offset + " failed after its reply header was sent: "
                    + (res == 0 ? "end of file" : Errors.name(res)));
            return;
        }
        // nothing of the reply was sent: an ordinary error reply; the pipe's partial bytes go with the pipe
        pipe.close();
        String cause = pipe.open("zero-copy reads");
        if (cause != null) {
            loop.failed(cause);
            return;
        }
        pipe.current = null;
        request.spliced = false;
        request.error = NbdProtocol.nbdError(error);
        loop.ready(request);
        next();
    }

    private void pipeFull(Pipe pipe)
    {
        if (pipe.headerSent) {
            drain(pipe);
            return;
        }
        pipe.handed = true;
        loop.ready(pipe.current);
    }

    private void drain(Pipe pipe)
    {
        if (!ring.prepSplice(pipe.readFd, -1, socketIndex, -1, pipe.inPipe,
                IoUring.SPLICE_F_MOVE | (pipe.left > 0 ? IoUring.SPLICE_F_MORE : 0), IoUring.IOSQE_FIXED_FILE, FIRST + 2L * pipe.index + 1)) {
            throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
        }
        pipe.drainPosted = true;
    }

    private void drained(Pipe pipe, int res)
    {
        if (aborted) {
            dropCurrent(pipe);
            return;
        }
        if (res > 0) {
            pipe.inPipe -= res;
            loop.progressed();
            if (pipe.inPipe > 0) {
                drain(pipe);
                return;
            }
            if (pipe.left > 0) {
                fill(pipe);
                return;
            }
            NbdRequest request = pipe.current;
            pipe.current = null;
            pipe.headerSent = false;
            reads++;
            bytes += request.length;
            request.spliced = false;
            loop.done(request);
            next();
            return;
        }
        if (res == -Errors.EAGAIN || res == -Errors.EINTR) {
            drain(pipe);
            return;
        }
        loop.failed(res == 0 ? "no progress" : Errors.newIOException("splice", res).getMessage());
    }

    private void dropCurrent(Pipe pipe)
    {
        if (pipe.current != null && !pipe.posted()) {
            NbdRequest request = pipe.current;
            pipe.current = null;
            request.spliced = false;
            loop.done(request);
        }
    }
}
