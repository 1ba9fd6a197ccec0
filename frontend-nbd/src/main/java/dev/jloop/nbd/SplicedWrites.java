package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.posix.Errors;
import dev.jloop.posix.Posix;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;

import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static java.util.Objects.requireNonNull;

/**
 * The zero-copy WRITEs of one io_uring connection loop (docs/nbd.md, "Zero-copy writes"), the mirror
 * image of {@link SplicedReads}: the payload of a large WRITE goes from the socket into a pipe and from
 * the pipe into the file's page cache at the WRITE's offset, so it is never copied into jloop's pages;
 * the pipe holds references to the socket buffer's pages, and the file copies them in once.
 *
 * <p>Two pipes per connection ({@link #PIPES}), one WRITE in each, in these steps:
 * <ol>
 * <li><b>head</b>: the payload bytes already in the loop's input buffer (received with the header)
 *     are written from there by {@code pwrite(2)} at the WRITE's offset, on this thread, as the loop
 *     writes small buffered WRITEs;</li>
 * <li><b>fill</b>: the rest of the payload is spliced from the socket into the pipe on this thread
 *     ({@code splice(2)} of what {@code FIONREAD} says the socket holds, never waiting), never more
 *     than the payload (so the next request's header stays in the socket) nor than the pipe has room
 *     for; when the socket is empty, an {@code IORING_OP_POLL_ADD} tells when to go on. An
 *     {@code IORING_OP_SPLICE} from the socket would cost an io-wq hand-off per piece of payload;</li>
 * <li><b>drain</b>: once the pipe holds half its size or the rest of the payload, it is spliced into
 *     the file at its offset with {@code IORING_OP_SPLICE} (an io-wq worker, where ext4 may block),
 *     while the fills go on behind it (the pipe keeps the order); a short splice goes on where it
 *     stopped;</li>
 * <li><b>sync</b>: with FUA, {@code IORING_OP_FSYNC} ({@code DATASYNC}) once every byte is in the
 *     file; then the reply.</li>
 * </ol>
 * The loop parses nothing and receives nothing while a WRITE's payload comes in, nor while both pipes
 * are taken ({@link #holdsInput}): the next request is parsed while the last of one WRITE goes into
 * the file, and a large WRITE right behind it takes the other pipe. A write that fails (the file's
 * {@code ENOSPC} or {@code EIO}) ends the splicing; the pipe's bytes are thrown away with the pipe,
 * and the loop skips the rest of the payload in the socket as for any refused WRITE, then sends an
 * ordinary error reply, so the stream stays in step. A socket that ends in the middle of the payload
 * ends the connection; the request is given back unanswered.
 *
 * <p>Statistics: the WRITE is counted by the device ({@link BlockDevice#writeServed}) once its last
 * byte is in the file (durable, with FUA), with the time since it was parsed.
 *
 * <p>Loop thread only.
 */
final class SplicedWrites
{
    /** User data of this class's SQEs, {@code [FIRST, LIMIT)}, three per pipe; the loop hands their CQEs to {@link #handle}. */
    static final long FIRST = SplicedReads.LIMIT;
    private static final int FILL = 0;
    private static final int DRAIN = 1;
    private static final int SYNC = 2;
    private static final int STEPS = 3;
    /**
     * Pipes per connection: while the last of one WRITE's payload goes from its pipe into the file,
     * the next WRITE's comes from the socket into the other.
     */
    static final int PIPES = 2;
    static final long LIMIT = FIRST + STEPS * PIPES;


    /** Where a spliced WRITE goes back to the loop. */
    interface Loop
    {
        /**
         * The WRITE is in the file, or failed ({@code request.error} is set): the loop skips the
         * {@code skip} bytes of its payload still in the socket, then sends its reply.
         */
        void written(NbdRequest request, long skip);

        /** The socket ended before the payload did, or the connection failed: the request is never answered; recycle it. */
        void gone(NbdRequest request, String endOfInput);

        /** A splice from the socket moved bytes. */
        void progressed();
    }

    private final Ring ring;
    private final BlockDevice device;
    private final Loop loop;
    private final int fileIndex;
    private final int socketIndex;
    private final int socketFd;
    private final int fileFd;
    private final int[] inputBytes = new int[1];
    private final long min;
    private final Pipe[] pipes = new Pipe[PIPES];
    private boolean aborted;

    private long writes;
    private long bytes;

    /** One pipe and the WRITE in it. */
    private static final class Pipe
            extends SplicePipe
    {
        final int index;
        long start;
        int headLength;
        int headWritten;
        /** Payload bytes that come from the socket, moved into the pipe so far, and from the pipe into the file. */
        long socketLength;
        long received;
        long written;
        boolean synced;
        int error;
        String endOfInput;

        /** A poll for the socket's input is posted (the fill waits for the client's bytes). */
        boolean fillPosted;
        /** The last fill found the pipe full: drain what it holds. */
        boolean full;
        /** The poll said the socket is readable: a fill may splice even though no byte is counted (the end of input). */
        boolean readable;
        boolean drainPosted;
        boolean syncPosted;

        Pipe(int index)
        {
            this.index = index;
        }

        @Override
        boolean posted()
        {
            return fillPosted || drainPosted || syncPosted;
        }

        /** Whether the socket or the loop's input buffer still belongs to this pipe's WRITE. */
        boolean receiving()
        {
            return current != null && (received < socketLength || headWritten < headLength);
        }
    }

    /**
     * @param fileIndex the file among the ring's registered files
     * @param socketIndex the socket among them
     * @param socketFd the socket's descriptor, for the fills' {@code splice(2)}
     * @param fileFd the file's descriptor, for the head's {@code pwrite(2)}
     * @param min the smallest WRITE spliced
     */
    SplicedWrites(Ring ring, BlockDevice device, Loop loop, int fileIndex, int socketIndex, int socketFd, int fileFd, long min)
    {
        this.socketFd = socketFd;
        this.fileFd = fileFd;
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
     * Whether a checked WRITE (inside the export, on a writable export) goes this way: long enough, not
     * wholly received with its header ({@code buffered} payload bytes are), and a pipe free.
     */
    boolean takes(NbdRequest request, long buffered)
    {
        return request.type == CMD_WRITE && request.length >= min && buffered < request.length && !aborted && free() != null;
    }

    /**
     * Starts a WRITE whose first {@code headLength} payload bytes are at {@code headAddress} (the
     * loop's input buffer; they are written before this returns); the rest is in the socket.
     */
    void start(NbdRequest request, long headAddress, int headLength)
    {
        Pipe pipe = free();
        pipe.current = request;
        pipe.start = System.nanoTime();
        pipe.headLength = headLength;
        pipe.headWritten = 0;
        pipe.socketLength = request.length - headLength;
        pipe.received = 0;
        pipe.written = 0;
        pipe.synced = (request.flags & CMD_FLAG_FUA) == 0;
        pipe.error = 0;
        pipe.endOfInput = null;
        pipe.readable = false;
        pipe.full = false;
        // As the loop writes small buffered WRITEs: ext4 would hand a write on the ring to an io-wq worker.
        while (pipe.headWritten < headLength) {
            long n = Posix.pwrite(fileFd, headAddress + pipe.headWritten, headLength - pipe.headWritten, request.offset + pipe.headWritten);
            if (n <= 0) {
                failed(pipe, n == 0 ? -Errno.EIO : (int) n);
                break;
            }
            pipe.headWritten += (int) n;
        }
        advance(pipe);
    }

    /**
     * Whether the loop must not receive or parse now: a WRITE's payload is coming in (the socket and
     * the input buffer belong to it), or both pipes are taken (a large WRITE parsed now would miss
     * them, and a copy sends them back to back).
     */
    boolean holdsInput()
    {
        boolean full = true;
        for (Pipe pipe : pipes) {
            if (pipe.receiving()) {
                return true;
            }
            full &= pipe.current != null || !pipe.isOpen();
        }
        return full && !aborted && usable();
    }

    /** Whether nothing is under way or on the ring. */
    boolean idle()
    {
        return SplicePipe.allIdle(pipes);
    }

    boolean posted()
    {
        return SplicePipe.anyPosted(pipes);
    }

    /** WRITEs spliced whole, and their bytes, for the connection's close line. */
    long writes()
    {
        return writes;
    }

    long bytes()
    {
        return bytes;
    }

    /** The connection failed: a WRITE under way is given back once nothing of it is on the ring; nothing new starts. */
    void abort()
    {
        aborted = true;
        for (Pipe pipe : pipes) {
            advance(pipe);
        }
    }

    /** A CQE whose user data is in {@code [FIRST, LIMIT)}. */
    void handle(long userData, int res)
    {
        Pipe pipe = pipes[(int) (userData - FIRST) / STEPS];
        switch ((int) (userData - FIRST) % STEPS) {
            case FILL:
                pipe.fillPosted = false;
                if (res > 0) {
                    pipe.readable = true;
                }
                else if (res != -Errors.EAGAIN && res != -Errors.EINTR && pipe.endOfInput == null) {
                    pipe.endOfInput = Errors.newIOException("poll", res).getMessage();
                }
                break;
            case DRAIN:
                pipe.drainPosted = false;
                if (res > 0) {
                    pipe.written += res;
                }
                else if (res != -Errors.EAGAIN && res != -Errors.EINTR) {
                    // 0: the pipe was empty although the count says it is not; never expected
                    failed(pipe, res == 0 ? -Errno.EIO : res);
                }
                break;
            default:
                pipe.syncPosted = false;
                if (res >= 0) {
                    pipe.synced = true;
                }
                else if (res != -Errors.EINTR) {
                    failed(pipe, res);
                }
        }
        advance(pipe);
    }

    /** Makes the pipes; returns why it cannot, or {@code null}. */
    String openPipes()
    {
        return SplicePipe.openAll(pipes, "zero-copy writes");
    }

    /** Closes the pipes; the loop calls it once no splice is on the ring. */
    void close()
    {
        SplicePipe.closeAll(pipes);
    }

    // ---- the steps

    private Pipe free()
    {
        for (Pipe pipe : pipes) {
            if (pipe.current == null && pipe.isOpen() && !pipe.posted()) {
                return pipe;
            }
        }
        return null;
    }

    private boolean usable()
    {
        for (Pipe pipe : pipes) {
            if (pipe.isOpen()) {
                return true;
            }
        }
        return false;
    }

    private static void failed(Pipe pipe, int res)
    {
        if (pipe.error == 0) {
            pipe.error = res;
        }
    }

    /** Posts what the pipe's WRITE needs next, or ends it once nothing of it is on the ring. */
    private void advance(Pipe pipe)
    {
        if (pipe.current == null) {
            return;
        }
        if (aborted || pipe.endOfInput != null || pipe.error != 0) {
            if (!pipe.posted()) {
                end(pipe);
            }
            return;
        }
        fill(pipe);
        if (pipe.endOfInput != null) {
            if (!pipe.posted()) {
                end(pipe);
            }
            return;
        }
        long base = pipe.current.offset;
        long inPipe = pipe.received - pipe.written;
        // Each drain is a hand-off to an io-wq worker: one per half pipe, or for the rest of the payload.
        if (inPipe > 0 && !pipe.drainPosted
                && (pipe.received == pipe.socketLength || inPipe >= pipe.size / 2 || pipe.size - inPipe < SplicePipe.PAGE || pipe.full)) {
            pipe.full = false;
            if (!ring.prepSplice(pipe.readFd, -1, fileIndex, base + pipe.headLength + pipe.written, (int) (pipe.received - pipe.written),
                    IoUring.SPLICE_F_MOVE, IoUring.IOSQE_FIXED_FILE, userData(pipe, DRAIN))) {
                throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
            }
            pipe.drainPosted = true;
        }
        if (pipe.posted()) {
            return;
        }
        if (!pipe.synced) {
            // every byte is in the page cache: FSYNC is not ordered against writes in flight, and none of this WRITE is
            if (!ring.prepFsync(fileIndex, IoUring.IOSQE_FIXED_FILE, IoUring.FSYNC_DATASYNC, userData(pipe, SYNC))) {
                throw new IllegalStateException("no SQE for an fsync: the ring is sized for every operation at once");
            }
            pipe.syncPosted = true;
            return;
        }
        end(pipe);
    }

    /**
     * Moves what the socket has of the payload into the pipe on this thread, as far as the pipe has
     * room, and posts a poll for the socket when it has nothing yet. A splice from the socket on the
     * ring would run in an io-wq worker (a thread hand-off each time); here it is one system call
     * that never waits: it asks for no more than the socket holds ({@code FIONREAD}; a blocking TCP
     * socket would otherwise wait for the rest) and does not wait for room in the pipe
     * ({@code SPLICE_F_NONBLOCK}: {@code EAGAIN}, and the drain under way makes room).
     */
    private void fill(Pipe pipe)
    {
        while (!pipe.fillPosted) {
            long room = pipe.size - (pipe.received - pipe.written);
            long left = pipe.socketLength - pipe.received;
            if (left == 0 || room < Math.min(SplicePipe.PAGE, left)) {
                return;
            }
            int available = Posix.inputBytes(socketFd, inputBytes);
            if (available < 0) {
                pipe.endOfInput = Errors.newIOException("ioctl", available).getMessage();
                return;
            }
            if (available == 0 && !pipe.readable) {
                poll(pipe);
                return;
            }
            // readable with nothing to read: the end of input or an error, which the splice returns at once
            long length = Math.min(Math.min(room, left), available > 0 ? available : left);
            pipe.readable = false;
            long n = Posix.splice(socketFd, pipe.writeFd, length, IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_NONBLOCK);
            if (n > 0) {
                pipe.received += n;
                loop.progressed();
            }
            else if (n == -Errors.EAGAIN) {
                if (pipe.received == pipe.written) {
                    poll(pipe);
                }
                else {
                    // the pipe is full (a slot per partial page): a drain makes room
                    pipe.full = true;
                }
                return;
            }
            else if (n != -Errors.EINTR) {
                pipe.endOfInput = n == 0 ? "end of input" : Errors.newIOException("splice", n).getMessage();
                return;
            }
        }
    }

    private void poll(Pipe pipe)
    {
        if (!ring.prep(IoUring.OP_POLL_ADD, IoUring.IOSQE_FIXED_FILE, socketIndex, 0, 0, 0, IoUring.POLLIN, userData(pipe, FILL), 0)) {
            throw new IllegalStateException("no SQE for a poll: the ring is sized for every operation at once");
        }
        pipe.fillPosted = true;
    }

    private static long userData(Pipe pipe, int step)
    {
        return FIRST + (long) STEPS * pipe.index + step;
    }

    private void end(Pipe pipe)
    {
        NbdRequest request = pipe.current;
        pipe.current = null;
        if (aborted || pipe.endOfInput != null) {
            // as a WRITE whose payload never arrived whole: never submitted, not counted
            loop.gone(request, pipe.endOfInput);
            return;
        }
        device.writeServed(request.length, pipe.error, System.nanoTime() - pipe.start);
        long skip = 0;
        if (pipe.error != 0) {
            request.error = NbdProtocol.nbdError(pipe.error);
            skip = pipe.socketLength - pipe.received;
            if (pipe.received > pipe.written) {
                // the pipe still holds payload bytes that will never be written: away with the pipe
                pipe.close();
                if (pipe.open("zero-copy writes") != null) {
                    // one pipe fewer for this connection (free() passes over it)
                    pipe.close();
                }
            }
        }
        else {
            writes++;
            bytes += request.length;
        }
        loop.written(request, skip);
    }
}
