package dev.jloop.nbd;

import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.uring.BufferRing;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

import static dev.jloop.nbd.NbdProtocol.REQUEST_SIZE;
import static java.util.Objects.requireNonNull;

/**
 * The receive side of an {@link NbdUringLoop} with one multishot {@code IORING_OP_RECV} armed on the
 * socket ({@link Ring#prepRecvMultishot}, Linux 6.0+): the kernel puts every chunk it receives into the
 * next of {@value #BUFFERS} provided buffers ({@link BufferRing}) and posts a CQE for it, with no SQE
 * and no {@code io_uring_enter} of ours per receive. The buffers are the request reader's input buffer
 * cut in {@value #BUFFERS}, so the receive costs no memory of its own.
 *
 * <p>The byte stream is the chunks in CQE order, behind a small stash: a request header that spans
 * chunks is put together in the stash, as are the last bytes of a partial header when the parser needs
 * more, so that their buffers go back to the ring. A buffer goes back to the ring as soon as all its
 * bytes are parsed, copied into a WRITE's pages, or skipped.
 *
 * <p>The receive ends without {@link IoUring#CQE_F_MORE} when the ring has no buffer left
 * ({@code -ENOBUFS}: the bytes stay in the socket), on a cancel, at end of input or on an error; the
 * loop arms it again only when its parser needs bytes, so back-pressure is simply not arming: the
 * kernel fills at most the free buffers, and nothing is lost or reordered. Loop thread only.
 */
final class MultishotReceiver
{
    static final int BUFFERS = 8;
    private static final int GROUP = 0;
    /** Multishot receives armed in this process, for tests that must know which receive ran. */
    static final AtomicLong ARMED = new AtomicLong();
    /** {@link #end()} while the receive has not ended for good. */
    static final int NOT_ENDED = 1;

    private final Ring ring;
    private final int socket;
    private final int sqeFlags;
    private final long userData;
    private final long cancelUserData;
    private final BufferRing buffers;
    private final int bufferSize;
    private final long address;
    /** Per buffer id: its received bytes not yet consumed, between position and limit. */
    private final ByteBuffer[] chunks = new ByteBuffer[BUFFERS];
    /** Ids of the buffers holding bytes, in the order they were received. */
    private final int[] queue = new int[BUFFERS];
    private int queueHead;
    private int queued;
    private long buffered;
    private final ByteBuffer stash = ByteBuffer.allocate(REQUEST_SIZE).flip();

    private boolean armed;
    private boolean cancelPosted;
    private boolean received;
    private int end = NOT_ENDED;

    private MultishotReceiver(Ring ring, int socket, int sqeFlags, long userData, long cancelUserData, BufferRing buffers, ByteBuffer memory, long address)
    {
        this.ring = ring;
        this.socket = socket;
        this.sqeFlags = sqeFlags;
        this.userData = userData;
        this.cancelUserData = cancelUserData;
        this.buffers = buffers;
        this.bufferSize = memory.capacity() / BUFFERS;
        this.address = address;
        ByteBuffer whole = memory.duplicate().clear();
        for (int i = 0; i < BUFFERS; i++) {
            chunks[i] = whole.slice(i * bufferSize, bufferSize).limit(0);
            buffers.add(address + (long) i * bufferSize, bufferSize, i);
        }
        buffers.publish();
    }

    /**
     * Registers the provided buffers, cut from {@code memory} (direct, its whole capacity), with
     * {@code ring}; the receives go on {@code socket} with {@code sqeFlags} (a fixed file, say) and
     * complete with {@code userData}, a cancel of them with {@code cancelUserData}.
     */
    static MultishotReceiver open(Ring ring, int socket, int sqeFlags, long userData, long cancelUserData, ByteBuffer memory)
            throws NativeIoException
    {
        requireNonNull(ring, "ring is null");
        requireNonNull(memory, "memory is null");
        if (!memory.isDirect() || memory.capacity() < BUFFERS * REQUEST_SIZE) {
            throw new IllegalArgumentException("need direct memory of at least " + BUFFERS * REQUEST_SIZE + " bytes");
        }
        BufferRing buffers = BufferRing.register(ring, GROUP, BUFFERS);
        return new MultishotReceiver(ring, socket, sqeFlags, userData, cancelUserData, buffers, memory, UnsafeAccess.address(memory));
    }

    /** Whether the receive is armed or its cancel in flight: the ring still holds an operation of ours. */
    boolean busy()
    {
        return armed || cancelPosted;
    }

    boolean armed()
    {
        return armed;
    }

    /**
     * {@link #NOT_ENDED}, or how the receive ended for good: 0 at end of input, else {@code -errno}.
     * Bytes may still be buffered then.
     */
    int end()
    {
        return end;
    }

    /** Whether the kernel refused the multishot receive before it received anything (an older kernel): receive single-shot instead. */
    boolean unsupported()
    {
        return end == -Errors.EINVAL && !received;
    }

    /** Bytes received and not yet consumed. */
    long buffered()
    {
        return buffered + stash.remaining();
    }

    /** Arms the receive unless it is; false when no SQE was free. Only with the buffered bytes consumed or stashed. */
    boolean arm()
    {
        if (armed) {
            return true;
        }
        if (queued == BUFFERS) {
            throw new IllegalStateException("no free buffer to receive into");
        }
        if (!ring.prepRecvMultishot(socket, sqeFlags, GROUP, 0, userData)) {
            return false;
        }
        armed = true;
        ARMED.incrementAndGet();
        return true;
    }

    /** Ends the armed receive early (its last CQE comes with -ECANCELED), so that a single-shot receive may follow. */
    void cancel()
    {
        if (armed && !cancelPosted && ring.prepAsyncCancel(userData, 0, cancelUserData)) {
            cancelPosted = true;
        }
    }

    void cancelled()
    {
        cancelPosted = false;
    }

    /** A CQE of the receive. */
    void completed(int res, int flags)
    {
        if ((flags & IoUring.CQE_F_MORE) == 0) {
            armed = false;
        }
        if ((flags & IoUring.CQE_F_BUFFER) != 0) {
            int id = flags >>> IoUring.CQE_BUFFER_SHIFT;
            if (res > 0) {
                received = true;
                chunks[id].limit(res).position(0);
                queue[(queueHead + queued) % BUFFERS] = id;
                queued++;
                buffered += res;
                return;
            }
            // a buffer taken for nothing: straight back
            buffers.add(address + (long) id * bufferSize, bufferSize, id);
            buffers.publish();
        }
        if (res <= 0 && !armed && res != -Errors.ENOBUFS && res != -Errors.ECANCELED && res != -Errors.EAGAIN && res != -Errors.EINTR) {
            end = res;
        }
    }

    /** Whether a whole request header is buffered. */
    boolean hasRequest()
    {
        return buffered() >= REQUEST_SIZE;
    }

    /** Parses the header at the front of the stream ({@link #hasRequest}) with {@code reader}; see {@link NbdRequestReader#parseHeader}. */
    int parseHeader(NbdRequestReader reader)
            throws NbdProtocolException
    {
        ByteBuffer front = front();
        if (front != stash && front.remaining() >= REQUEST_SIZE) {
            int type = reader.parseHeader(front);
            buffered -= REQUEST_SIZE;
            release();
            return type;
        }
        fillStash(REQUEST_SIZE);
        return reader.parseHeader(stash);
    }

    /**
     * Moves the few bytes buffered (less than a header: the parser needs more) into the stash, so
     * that every buffer is free for the kernel again.
     */
    void stashPartial()
    {
        if (buffered > 0) {
            fillStash((int) buffered());
        }
    }

    /** Copies buffered payload into {@code request}'s pages ({@link NbdRequest#preparePageBuffers} done); true when they are full. */
    boolean takePayload(NbdRequest request)
    {
        for (int i = 0; i < request.nrPages; i++) {
            ByteBuffer page = request.pages[i].buffer();
            while (page.hasRemaining()) {
                ByteBuffer front = front();
                if (front == null) {
                    return false;
                }
                int n = Math.min(page.remaining(), front.remaining());
                int limit = front.limit();
                front.limit(front.position() + n);
                page.put(front);
                front.limit(limit);
                consumed(front, n);
            }
        }
        return true;
    }

    /** Drops up to {@code length} buffered bytes of a refused payload; returns how many are left to drop. */
    long skip(long length)
    {
        while (length > 0) {
            ByteBuffer front = front();
            if (front == null) {
                break;
            }
            int n = (int) Math.min(front.remaining(), length);
            front.position(front.position() + n);
            consumed(front, n);
            length -= n;
        }
        return length;
    }

    /** Unregisters the buffers; the receive must have ended. */
    void close()
    {
        try {
            buffers.close();
        }
        catch (NativeIoException e) {
            // the ring's close frees them anyway
        }
    }

    /** The buffer the stream goes on with: the stash first, then the oldest chunk; null when nothing is buffered. */
    private ByteBuffer front()
    {
        if (stash.hasRemaining()) {
            return stash;
        }
        release();
        return queued == 0 ? null : chunks[queue[queueHead]];
    }

    private void consumed(ByteBuffer front, int n)
    {
        if (front != stash) {
            buffered -= n;
        }
    }

    /** Gives the buffers consumed at the front of the queue back to the ring. */
    private void release()
    {
        boolean any = false;
        while (queued > 0) {
            int id = queue[queueHead];
            if (chunks[id].hasRemaining()) {
                break;
            }
            queueHead = (queueHead + 1) % BUFFERS;
            queued--;
            buffers.add(address + (long) id * bufferSize, bufferSize, id);
            any = true;
        }
        if (any) {
            buffers.publish();
        }
    }

    /** Puts the stream's first {@code bytes} (at most a header, all buffered) together in the stash. */
    private void fillStash(int bytes)
    {
        stash.compact();
        while (stash.position() < bytes) {
            release();
            if (queued == 0) {
                throw new IllegalStateException("fewer bytes buffered than counted: " + this);
            }
            ByteBuffer chunk = chunks[queue[queueHead]];
            int n = Math.min(bytes - stash.position(), chunk.remaining());
            int limit = chunk.limit();
            chunk.limit(chunk.position() + n);
            stash.put(chunk);
            chunk.limit(limit);
            buffered -= n;
        }
        stash.flip();
        release();
    }

    @Override
    public String toString()
    {
        return "MultishotReceiver{armed=" + armed + ", buffered=" + buffered() + ", queued=" + queued + ", end=" + end + "}";
    }
}
