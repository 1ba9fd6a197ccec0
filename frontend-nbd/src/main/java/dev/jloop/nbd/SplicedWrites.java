package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.posix.Errors;
import dev.jloop.posix.Posix;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static java.util.Objects.requireNonNull;

/**
 * The zero-copy WRITEs of one io_uring connection loop (docs/nbd.md, "Zero-copy writes"), the mirror
 * image of {@link SplicedReads}: the payload of a large WRITE goes from the socket into a pipe and from
 * the pipe into the file's page cache at the WRITE's offset with {@code IORING_OP_SPLICE}, so it is
 * never copied into jloop's pages; the pipe holds references to the socket buffer's pages, and the
 * file copies them in once.
 *
 * <p>One WRITE at a time, in these steps:
 * <ol>
 * <li><b>head</b>: the payload bytes already in the loop's input buffer (received with the header)
 *     are written from there with {@code IORING_OP_WRITE} at the WRITE's offset; the loop receives
 *     nothing into that buffer until it is done;</li>
 * <li><b>fill</b>: the rest of the payload is spliced from the socket into the pipe, never more than
 *     the payload (so the next request's header stays in the socket) nor than the pipe has room for;
 *     the splice waits in its io-wq worker for the client's bytes, and a short one goes on where it
 *     stopped;</li>
 * <li><b>drain</b>: what is in the pipe is spliced into the file at its offset, while the next fill
 *     goes on (the pipe keeps the order); a short splice goes on where it stopped;</li>
 * <li><b>sync</b>: with FUA, {@code IORING_OP_FSYNC} ({@code DATASYNC}) once every byte is in the
 *     file; then the reply.</li>
 * </ol>
 * The loop parses nothing and receives nothing until the WRITE is done ({@link #holdsInput}). A
 * write that fails (the file's {@code ENOSPC} or {@code EIO}) ends the splicing; the pipe's bytes are
 * thrown away with the pipe, and the loop skips the rest of the payload in the socket as for any
 * refused WRITE, then sends an ordinary error reply, so the stream stays in step. A socket that
 * ends in the middle of the payload ends the connection; the request is given back unanswered.
 *
 * <p>Statistics: the WRITE is counted by the device ({@link BlockDevice#writeServed}) once its last
 * byte is in the file (durable, with FUA), with the time since it was parsed.
 *
 * <p>Loop thread only.
 */
final class SplicedWrites
{
    /** User data of this class's SQEs, {@code [FIRST, LIMIT)}; the loop hands their CQEs to {@link #handle}. */
    static final long FIRST = SplicedReads.LIMIT;
    private static final long HEAD = FIRST;
    private static final long FILL = FIRST + 1;
    private static final long DRAIN = FIRST + 2;
    private static final long SYNC = FIRST + 3;
    static final long LIMIT = FIRST + 4;

    /** The pipe's capacity, as for {@link SplicedReads#PIPE_SIZE}; where the system refuses it, the size it got. */
    static final int PIPE_SIZE = 1 << 20;
    private static final int PAGE = 4096;

    /** Where a spliced WRITE goes back to the loop. */
    interface Loop
    {
        /**
         * The WRITE is in the file, or failed ({@code request.error} is set): the loop skips the
         * {@code skip} bytes of its payload still in the socket, then sends its reply.
         */
        void written(NbdRequest request, long skip);

        /** The socket ended before the payload did, or the connection failed: the request is never answered; recycle it. */
        void gone(NbdRequest request, boolean endOfInput);

        /** A splice from the socket moved bytes. */
        void progressed();
    }

    private final Ring ring;
    private final BlockDevice device;
    private final Loop loop;
    private final int fileIndex;
    private final int socketIndex;
    private final long min;
    private final ByteBuffer fds = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
    private int readFd = -1;
    private int writeFd = -1;
    private int pipeSize;

    /** The WRITE being spliced, or null. */
    private NbdRequest current;
    private long start;
    private long headAddress;
    private int headLength;
    private int headWritten;
    /** Payload bytes that come from the socket, moved into the pipe so far, and from the pipe into the file. */
    private long socketLength;
    private long received;
    private long written;
    private boolean synced;
    private int error;
    private String endOfInput;
    private boolean aborted;

    private boolean headPosted;
    private boolean fillPosted;
    private boolean drainPosted;
    private boolean syncPosted;

    private long writes;
    private long bytes;

    /**
     * @param fileIndex the file among the ring's registered files
     * @param socketIndex the socket among them
     * @param min the smallest WRITE spliced
     */
    SplicedWrites(Ring ring, BlockDevice device, Loop loop, int fileIndex, int socketIndex, long min)
    {
        this.ring = requireNonNull(ring, "ring is null");
        this.device = requireNonNull(device, "device is null");
        this.loop = requireNonNull(loop, "loop is null");
        this.fileIndex = fileIndex;
        this.socketIndex = socketIndex;
        this.min = min;
    }

    /**
     * Whether a checked WRITE (inside the export, on a writable export) goes this way: long enough, not
     * wholly received with its header ({@code buffered} payload bytes are), and no other one under way.
     */
    boolean takes(NbdRequest request, long buffered)
    {
        return request.type == CMD_WRITE && request.length >= min && buffered < request.length
                && current == null && !aborted && readFd >= 0;
    }

    /**
     * Starts a WRITE whose first {@code headLength} payload bytes are at {@code headAddress} (the
     * loop's input buffer, which must stay as it is until {@link #holdsInput} is false); the rest is
     * in the socket.
     */
    void start(NbdRequest request, long headAddress, int headLength)
    {
        current = request;
        start = System.nanoTime();
        this.headAddress = headAddress;
        this.headLength = headLength;
        headWritten = 0;
        socketLength = request.length - headLength;
        received = 0;
        written = 0;
        synced = (request.flags & CMD_FLAG_FUA) == 0;
        error = 0;
        endOfInput = null;
        advance();
    }

    /**
     * Whether a WRITE is under way: the loop must not receive or parse. While its payload comes in,
     * the socket and the input buffer belong to it; after that, until its last bytes are in the file,
     * holding the next request keeps a following large WRITE from missing the pipe (a sequential copy
     * sends them back to back).
     */
    boolean holdsInput()
    {
        return current != null;
    }

    /** Whether nothing is under way or on the ring. */
    boolean idle()
    {
        return current == null && !posted();
    }

    boolean posted()
    {
        return headPosted || fillPosted || drainPosted || syncPosted;
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

    /** The connection failed: the WRITE under way is given back once nothing of it is on the ring; nothing new starts. */
    void abort()
    {
        aborted = true;
        advance();
    }

    /** A CQE whose user data is in {@code [FIRST, LIMIT)}. */
    void handle(long userData, int res)
    {
        if (userData == HEAD) {
            headPosted = false;
            if (res > 0) {
                headWritten += res;
            }
            else if (res != -Errors.EAGAIN && res != -Errors.EINTR) {
                failed(res == 0 ? -Errno.EIO : res);
            }
        }
        else if (userData == FILL) {
            fillPosted = false;
            if (res > 0) {
                received += res;
                loop.progressed();
            }
            else if (res != -Errors.EAGAIN && res != -Errors.EINTR && endOfInput == null) {
                endOfInput = res == 0 ? "end of input" : Errors.newIOException("splice", res).getMessage();
            }
        }
        else if (userData == DRAIN) {
            drainPosted = false;
            if (res > 0) {
                written += res;
            }
            else if (res != -Errors.EAGAIN && res != -Errors.EINTR) {
                // 0: the pipe was empty although the count says it is not; never expected
                failed(res == 0 ? -Errno.EIO : res);
            }
        }
        else if (userData == SYNC) {
            syncPosted = false;
            if (res < 0 && res != -Errors.EINTR) {
                failed(res);
            }
            else if (res >= 0) {
                synced = true;
            }
        }
        advance();
    }

    /** Makes the pipe; returns why it cannot, or {@code null}. */
    String openPipe()
    {
        int res = Posix.pipe2(UnsafeAccess.address(fds), Posix.O_CLOEXEC);
        if (res < 0) {
            return "cannot make a pipe for zero-copy writes: " + Errors.name(res);
        }
        readFd = fds.getInt(0);
        writeFd = fds.getInt(4);
        int size = Posix.fcntl(writeFd, Posix.F_SETPIPE_SZ, PIPE_SIZE);
        if (size < 0) {
            size = Posix.fcntl(writeFd, Posix.F_GETPIPE_SZ, 0);
        }
        pipeSize = Math.max(size, PAGE);
        return null;
    }

    /** Closes the pipe; the loop calls it once no splice is on the ring. */
    void close()
    {
        if (readFd >= 0) {
            Posix.close(readFd);
            Posix.close(writeFd);
            readFd = -1;
            writeFd = -1;
        }
    }

    // ---- the steps

    private void failed(int res)
    {
        if (error == 0) {
            error = res;
        }
    }

    /** Posts what the WRITE needs next, or ends it once nothing of it is on the ring. */
    private void advance()
    {
        if (current == null) {
            return;
        }
        if (aborted || endOfInput != null || error != 0) {
            if (!posted()) {
                end();
            }
            return;
        }
        if (headWritten < headLength && !headPosted) {
            if (!ring.prepWrite(fileIndex, IoUring.IOSQE_FIXED_FILE, headAddress + headWritten, headLength - headWritten,
                    current.offset + headWritten, 0, HEAD)) {
                throw new IllegalStateException("no SQE for a write: the ring is sized for every operation at once");
            }
            headPosted = true;
        }
        if (written < received && !drainPosted) {
            if (!ring.prepSplice(readFd, -1, fileIndex, current.offset + headLength + written, (int) (received - written),
                    IoUring.SPLICE_F_MOVE, IoUring.IOSQE_FIXED_FILE, DRAIN)) {
                throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
            }
            drainPosted = true;
        }
        long room = pipeSize - (received - written);
        long left = socketLength - received;
        if (left > 0 && !fillPosted && room >= Math.min(PAGE, left)) {
            // without SPLICE_F_NONBLOCK: the worker waits for the client's bytes; a shutdown of the socket ends the wait
            if (!ring.prepSplice(socketIndex, -1, writeFd, -1, (int) Math.min(room, left),
                    IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_FD_IN_FIXED, 0, FILL)) {
                throw new IllegalStateException("no SQE for a splice: the ring is sized for every operation at once");
            }
            fillPosted = true;
        }
        if (posted()) {
            return;
        }
        if (!synced) {
            // every byte is in the page cache: FSYNC is not ordered against writes in flight, and none is
            if (!ring.prepFsync(fileIndex, IoUring.IOSQE_FIXED_FILE, IoUring.FSYNC_DATASYNC, SYNC)) {
                throw new IllegalStateException("no SQE for an fsync: the ring is sized for every operation at once");
            }
            syncPosted = true;
            return;
        }
        end();
    }

    private void end()
    {
        NbdRequest request = current;
        current = null;
        if (aborted || endOfInput != null) {
            // as a WRITE whose payload never arrived whole: never submitted, not counted
            loop.gone(request, endOfInput != null);
            return;
        }
        device.writeServed(request.length, error, System.nanoTime() - start);
        long skip = 0;
        if (error != 0) {
            request.error = NbdProtocol.nbdError(error);
            skip = socketLength - received;
            if (received > written) {
                // the pipe still holds payload bytes that will never be written: away with the pipe
                close();
                String cause = openPipe();
                if (cause != null) {
                    // no more spliced WRITEs on this connection (takes() sees no pipe)
                    close();
                }
            }
        }
        else {
            writes++;
            bytes += request.length;
        }
        loop.written(request, skip);
    }

    /** Why the socket ended in the middle of a payload, for the loop's log. */
    String endOfInput()
    {
        return endOfInput;
    }
}
