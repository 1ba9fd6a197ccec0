package dev.jloop.nbd.tls;

import dev.jloop.nbd.channel.NbdChannel;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.util.concurrent.locks.ReentrantLock;

import static java.util.Objects.requireNonNull;

/**
 * An NBD connection after STARTTLS: a blocking {@link SSLEngine} over the plain channel, so it works
 * on TCP, Unix sockets and pipes alike.
 *
 * <p>One thread reads while another writes, as {@link NbdChannel} allows: {@code unwrap} and the
 * transport's reads happen under the read lock, {@code wrap} and the transport's writes under the
 * write lock (SSLEngine lets the two run concurrently). When unwrapping asks for a wrap (a TLS 1.3
 * KeyUpdate to answer) the reader takes the write lock too; the writer never takes the read lock,
 * so the two cannot deadlock.
 *
 * <p>The costs a bulk copy pays here, and how they are kept down (docs/nbd.md, "TLS"):
 * <ul>
 *   <li>Records are unwrapped straight into the caller's buffers (a WRITE payload's pages, the
 *   reader's input buffer) whenever these have room for a whole record; only a record that would
 *   not fit goes through {@link #appIn} and is copied once more. JSSE decrypts in place in
 *   {@link #netIn} and copies the plain text out, so that is the one copy left.
 *   <li>{@link #netIn} takes several records per read from the transport, and is compacted only
 *   before a read, never after each record.
 *   <li>A large reply is wrapped into full-size records, up to {@value #RECORDS_PER_BUFFER} of
 *   them per transport write.
 *   <li>The ciphertext buffers are on the heap: the JDK's AES-GCM works faster there than on direct
 *   buffers (JDK 17: about 3.7 against 2.9 GB/s a core; JDK 25: 6 against 2.7 when wrapping), which
 *   pays for the copy to a direct buffer that the socket write or read then makes.
 * </ul>
 */
final class TlsNbdChannel
        implements NbdChannel
{
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);
    /**
     * Full-size TLS records the ciphertext buffers hold: this many per transport write of a large
     * reply, and at most this many taken per transport read. Each is about 16.7 KiB, twice (in and
     * out) per TLS connection, on the heap.
     */
    static final int RECORDS_PER_BUFFER = 8;

    private final NbdChannel transport;
    private final SSLEngine engine;
    private final ReentrantLock readLock = new ReentrantLock();
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Ciphertext read from the transport and not yet unwrapped; in read mode. */
    private ByteBuffer netIn;
    /** Plain text unwrapped and not yet handed out; in read mode. */
    private ByteBuffer appIn;
    /** Ciphertext to write; in write mode between uses. */
    private ByteBuffer netOut;
    private boolean inputEnded;
    // Under the read lock: one-element arrays for the single-buffer calls, not one per record.
    private final ByteBuffer[] readOne = new ByteBuffer[1];
    private final ByteBuffer[] appInOne = new ByteBuffer[1];

    private TlsNbdChannel(NbdChannel transport, SSLEngine engine)
    {
        this.transport = requireNonNull(transport, "transport is null");
        this.engine = requireNonNull(engine, "engine is null");
        int packet = engine.getSession().getPacketBufferSize();
        this.netIn = ByteBuffer.allocate(packet * RECORDS_PER_BUFFER).flip();
        this.appIn = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(packet * RECORDS_PER_BUFFER);
    }

    /** Runs the TLS handshake on the calling thread; the channel is ready for data when this returns. */
    static TlsNbdChannel handshake(NbdChannel transport, SSLEngine engine)
            throws IOException
    {
        TlsNbdChannel channel = new TlsNbdChannel(transport, engine);
        engine.beginHandshake();
        channel.readLock.lock();
        channel.writeLock.lock();
        try {
            HandshakeStatus status = engine.getHandshakeStatus();
            while (status != HandshakeStatus.FINISHED && status != HandshakeStatus.NOT_HANDSHAKING) {
                switch (status) {
                    case NEED_UNWRAP:
                    case NEED_UNWRAP_AGAIN: {
                        SSLEngineResult result = channel.unwrapToAppIn();
                        if (result == null || result.getStatus() == SSLEngineResult.Status.CLOSED) {
                            throw new EOFException("client closed the connection during the TLS handshake");
                        }
                        status = result.getHandshakeStatus();
                        break;
                    }
                    case NEED_WRAP:
                        status = channel.wrapAndFlush(new ByteBuffer[] {EMPTY}, 0, 1).getHandshakeStatus();
                        break;
                    case NEED_TASK:
                        runTasks(engine);
                        status = engine.getHandshakeStatus();
                        break;
                    default:
                        throw new SSLException("unexpected TLS handshake state " + status);
                }
            }
        }
        catch (SSLException e) {
            channel.sendAlert();
            throw e;
        }
        finally {
            channel.writeLock.unlock();
            channel.readLock.unlock();
        }
        return channel;
    }

    @Override
    public int read(ByteBuffer buffer)
            throws IOException
    {
        readLock.lock();
        try {
            readOne[0] = buffer;
            return (int) read(readOne, 0, 1, false);
        }
        finally {
            readOne[0] = null;
            readLock.unlock();
        }
    }

    @Override
    public long read(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        return read(buffers, offset, length, true);
    }

    /**
     * @param drain whether to go on with the whole records already read that fit the buffers: yes for
     *     a scattering read (a WRITE payload into its pages); no for the reader's input buffer, where
     *     one record holds many pipelined request headers, and a payload that follows them is better
     *     left encrypted until its pages are ready to take it
     */
    private long read(ByteBuffer[] buffers, int offset, int length, boolean drain)
            throws IOException
    {
        readLock.lock();
        try {
            while (true) {
                if (appIn.hasRemaining()) {
                    return copyAppIn(buffers, offset, length);
                }
                if (inputEnded) {
                    return -1;
                }
                if (!hasRemaining(buffers, offset, length)) {
                    return 0;
                }
                SSLEngineResult result = unwrap(buffers, offset, length);
                if (result == null || result.getStatus() == SSLEngineResult.Status.CLOSED) {
                    inputEnded = true;
                    continue;
                }
                if (result.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                    // Less room than the next record holds: it goes through appIn.
                    fill();
                    continue;
                }
                afterUnwrap(result.getHandshakeStatus());
                long produced = result.bytesProduced();
                if (produced > 0) {
                    return drain ? produced + unwrapBuffered(buffers, offset, length) : produced;
                }
            }
        }
        finally {
            readLock.unlock();
        }
    }

    /**
     * Unwraps the whole records already in {@link #netIn} that fit the buffers, without reading the
     * transport; returns the bytes that produced. Under the read lock.
     */
    private long unwrapBuffered(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        long produced = 0;
        while (netIn.hasRemaining() && hasRemaining(buffers, offset, length)) {
            SSLEngineResult result = engine.unwrap(netIn, buffers, offset, length);
            if (result.getStatus() != SSLEngineResult.Status.OK) {
                // an incomplete record, one too big for the buffers, or close_notify: the next read sees to them
                break;
            }
            produced += result.bytesProduced();
            afterUnwrap(result.getHandshakeStatus());
        }
        return produced;
    }

    private long copyAppIn(ByteBuffer[] buffers, int offset, int length)
    {
        long copied = 0;
        for (int i = offset; i < offset + length && appIn.hasRemaining(); i++) {
            ByteBuffer buffer = buffers[i];
            int n = Math.min(buffer.remaining(), appIn.remaining());
            buffer.put(buffer.position(), appIn, appIn.position(), n);
            buffer.position(buffer.position() + n);
            appIn.position(appIn.position() + n);
            copied += n;
        }
        return copied;
    }

    @Override
    public long write(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        writeLock.lock();
        try {
            long total = 0;
            while (hasRemaining(buffers, offset, length)) {
                SSLEngineResult result = wrapAndFlush(buffers, offset, length);
                if (result.getStatus() == SSLEngineResult.Status.CLOSED) {
                    throw new ClosedChannelException();
                }
                total += result.bytesConsumed();
            }
            return total;
        }
        finally {
            writeLock.unlock();
        }
    }

    @Override
    public void shutdownInput()
            throws IOException
    {
        transport.shutdownInput();
    }

    /** Sends close_notify when no write is under way (a stalled writer must not hold up the close), then closes the socket. */
    @Override
    public void close()
            throws IOException
    {
        try {
            if (writeLock.tryLock()) {
                try {
                    engine.closeOutbound();
                    while (!engine.isOutboundDone()) {
                        SSLEngineResult result = wrapAndFlush(new ByteBuffer[] {EMPTY}, 0, 1);
                        if (result.getStatus() == SSLEngineResult.Status.CLOSED && result.bytesProduced() == 0) {
                            break;
                        }
                    }
                }
                catch (IOException e) {
                    // the peer is gone: nothing to tell it
                }
                finally {
                    writeLock.unlock();
                }
            }
        }
        finally {
            transport.close();
        }
    }

    /** After a failed handshake the engine holds an alert saying why: the client should hear it rather than see the socket drop. */
    private void sendAlert()
    {
        try {
            engine.closeOutbound();
            for (int i = 0; i < 4 && !engine.isOutboundDone(); i++) {
                wrapAndFlush(new ByteBuffer[] {EMPTY}, 0, 1);
            }
        }
        catch (IOException | RuntimeException e) {
            // the client may be gone already; the handshake failure is what matters
        }
    }

    /** Makes plain text available in {@link #appIn}; false at the end of input. Under the read lock. */
    private boolean fill()
            throws IOException
    {
        while (!appIn.hasRemaining()) {
            if (inputEnded) {
                return false;
            }
            SSLEngineResult result = unwrapToAppIn();
            if (result == null || result.getStatus() == SSLEngineResult.Status.CLOSED) {
                inputEnded = true;
                return appIn.hasRemaining();
            }
            afterUnwrap(result.getHandshakeStatus());
        }
        return true;
    }

    /** Runs the tasks and sends the answers (a TLS 1.3 KeyUpdate) an unwrap asked for. Under the read lock. */
    private void afterUnwrap(HandshakeStatus status)
            throws IOException
    {
        while (status == HandshakeStatus.NEED_TASK || status == HandshakeStatus.NEED_WRAP) {
            if (status == HandshakeStatus.NEED_TASK) {
                runTasks(engine);
                status = engine.getHandshakeStatus();
            }
            else {
                writeLock.lock();
                try {
                    status = wrapAndFlush(new ByteBuffer[] {EMPTY}, 0, 1).getHandshakeStatus();
                }
                finally {
                    writeLock.unlock();
                }
            }
        }
    }

    /** Unwraps one record into {@link #appIn}, growing it if the record needs more room; null when the transport ended. */
    private SSLEngineResult unwrapToAppIn()
            throws IOException
    {
        while (true) {
            appIn.compact();
            SSLEngineResult result;
            appInOne[0] = appIn;
            try {
                result = unwrap(appInOne, 0, 1);
            }
            finally {
                appInOne[0] = null;
                appIn.flip();
            }
            if (result == null || result.getStatus() != SSLEngineResult.Status.BUFFER_OVERFLOW) {
                return result;
            }
            appIn = grow(appIn, engine.getSession().getApplicationBufferSize(), true);
        }
    }

    /**
     * Unwraps one record into the buffers, reading from the transport as needed; BUFFER_OVERFLOW
     * (nothing consumed) when they have less room than the record needs, null when the transport
     * ended (with or without close_notify: the NBD layer sees end of input either way).
     */
    private SSLEngineResult unwrap(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        while (true) {
            SSLEngineResult result = engine.unwrap(netIn, buffers, offset, length);
            switch (result.getStatus()) {
                case OK:
                case CLOSED:
                case BUFFER_OVERFLOW:
                    return result;
                case BUFFER_UNDERFLOW:
                    if (!readTransport()) {
                        return null;
                    }
                    break;
                default:
                    throw new SSLException("unexpected unwrap status " + result.getStatus());
            }
        }
    }

    /** Reads what the transport has, as many records as fit, behind what {@link #netIn} holds; false at end of input. */
    private boolean readTransport()
            throws IOException
    {
        netIn.compact();
        try {
            if (!netIn.hasRemaining()) {
                // a record larger than the buffer: the session's packet size grew
                netIn = grow(netIn, engine.getSession().getPacketBufferSize(), false);
            }
            return transport.read(netIn) >= 0;
        }
        finally {
            netIn.flip();
        }
    }

    /** Wraps what fits of the buffers into records and writes them out. Under the write lock. */
    private SSLEngineResult wrapAndFlush(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        netOut.clear();
        SSLEngineResult result;
        long consumed = 0;
        HandshakeStatus status;
        while (true) {
            result = engine.wrap(buffers, offset, length, netOut);
            consumed += result.bytesConsumed();
            if (result.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                if (netOut.position() == 0) {
                    netOut = ByteBuffer.allocate(engine.getSession().getPacketBufferSize() * RECORDS_PER_BUFFER);
                    continue;
                }
                break;
            }
            status = result.getHandshakeStatus();
            if (result.getStatus() != SSLEngineResult.Status.OK || status != HandshakeStatus.NOT_HANDSHAKING
                    || !hasRemaining(buffers, offset, length)) {
                break;
            }
        }
        netOut.flip();
        while (netOut.hasRemaining()) {
            transport.write(netOut);
        }
        return new SSLEngineResult(result.getStatus(), result.getHandshakeStatus(), (int) consumed, 0);
    }

    private static boolean hasRemaining(ByteBuffer[] buffers, int offset, int length)
    {
        for (int i = offset; i < offset + length; i++) {
            if (buffers[i].hasRemaining()) {
                return true;
            }
        }
        return false;
    }

    /** A bigger buffer with the same contents; {@code readMode} says whether position..limit or 0..position hold them. */
    private static ByteBuffer grow(ByteBuffer buffer, int atLeast, boolean readMode)
    {
        ByteBuffer bigger = ByteBuffer.allocate(Math.max(atLeast, buffer.capacity()) + buffer.capacity());
        if (readMode) {
            bigger.put(buffer).flip();
        }
        else {
            bigger.put(buffer.flip());
        }
        return bigger;
    }

    private static void runTasks(SSLEngine engine)
    {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }
}
