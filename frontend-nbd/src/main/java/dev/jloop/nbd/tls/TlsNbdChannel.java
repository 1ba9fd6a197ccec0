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
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
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
 *   them per transport write. Buffers shorter than a record with more data behind them (a reply's
 *   header, the tail of its payload, small replies) are copied together into {@link #plainOut} and
 *   wrapped as one record: BoringSSL's engine, like any in the JDK's compatibility mode, wraps one
 *   buffer per record, so a header would otherwise be a record of its own, costing its overhead here
 *   and a record's work in the client.
 *   <li>The ciphertext buffers are direct or on the heap, as the engine works faster
 *   ({@link TlsEngines#directBuffers}): BoringSSL reads and writes direct memory in place, and the
 *   socket then needs no copy; the JDK's AES-GCM runs faster on the heap (JDK 17: about 3.7 against
 *   2.9 GB/s a core; JDK 25: 6 against 2.7 when wrapping), which pays for the copy to a direct buffer
 *   that the socket write or read then makes.
 * </ul>
 */
final class TlsNbdChannel
        implements NbdChannel
{
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);
    /**
     * Full-size TLS records the ciphertext buffers hold: this many per transport write of a large
     * reply, and at most this many taken per transport read. Each is about 16.7 KiB, twice (in and
     * out) per TLS connection, direct or on the heap as the engine prefers.
     */
    static final int RECORDS_PER_BUFFER = 8;
    /** The most plain text one TLS record carries (RFC 8446, 5.1). */
    static final int MAX_RECORD_PLAIN_TEXT = 16384;

    private final NbdChannel transport;
    private final TlsEngines engines;
    private final SSLEngine engine;
    private final ReentrantLock readLock = new ReentrantLock();
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Ciphertext read from the transport and not yet unwrapped; in read mode. */
    private ByteBuffer netIn;
    /** Plain text unwrapped and not yet handed out; in read mode. */
    private ByteBuffer appIn;
    /** Ciphertext to write; in write mode between uses. */
    private ByteBuffer netOut;
    /** Plain text of short buffers gathered into one record; in write mode, empty between writes. Under the write lock. */
    private final ByteBuffer plainOut;
    /**
     * The most plain text the engine puts in one record, as learnt from the first gathered record it
     * wrapped short: the JDK's engine stops 17 bytes below the protocol's 16 KiB on TLS 1.3, and a
     * gathered record of 16 KiB would then be followed by one of 17 bytes. Under the write lock.
     */
    private int recordPlainText = MAX_RECORD_PLAIN_TEXT;
    /**
     * The channel's own reference, dropped by {@link #close}, and one for each read or write under
     * way: the engine's memory is freed when the last goes, so a close from another thread (the
     * reply timeout's) never waits for a stuck reader or writer, nor frees memory they still use.
     */
    private final AtomicInteger references = new AtomicInteger(1);
    private final AtomicBoolean closed = new AtomicBoolean();
    private boolean inputEnded;
    // Under the read lock: one-element arrays for the single-buffer calls, not one per record.
    private final ByteBuffer[] readOne = new ByteBuffer[1];
    private final ByteBuffer[] appInOne = new ByteBuffer[1];

    private TlsNbdChannel(NbdChannel transport, TlsEngines engines, SSLEngine engine)
    {
        this.transport = requireNonNull(transport, "transport is null");
        this.engines = requireNonNull(engines, "engines is null");
        this.engine = requireNonNull(engine, "engine is null");
        int packet = engine.getSession().getPacketBufferSize();
        this.netIn = allocate(packet * RECORDS_PER_BUFFER).flip();
        this.appIn = allocate(engine.getSession().getApplicationBufferSize()).flip();
        this.netOut = allocate(packet * RECORDS_PER_BUFFER);
        this.plainOut = allocate(MAX_RECORD_PLAIN_TEXT);
    }

    /**
     * Runs the TLS handshake on the calling thread with a new engine of {@code engines}; the channel
     * is ready for data when this returns.
     */
    static TlsNbdChannel handshake(NbdChannel transport, TlsEngines engines)
            throws IOException
    {
        SSLEngine engine = engines.newEngine();
        TlsNbdChannel channel;
        try {
            channel = new TlsNbdChannel(transport, engines, engine);
        }
        catch (RuntimeException | Error e) {
            // as an OutOfMemoryError for the direct buffers: the engine's native memory is ours to free
            engines.release(engine);
            throw e;
        }
        boolean done = false;
        try {
            channel.handshake();
            done = true;
            return channel;
        }
        finally {
            if (!done) {
                channel.dereference();
            }
        }
    }

    private void handshake()
            throws IOException
    {
        engine.beginHandshake();
        readLock.lock();
        writeLock.lock();
        try {
            HandshakeStatus status = engine.getHandshakeStatus();
            while (status != HandshakeStatus.FINISHED && status != HandshakeStatus.NOT_HANDSHAKING) {
                switch (status) {
                    case NEED_UNWRAP:
                    case NEED_UNWRAP_AGAIN: {
                        SSLEngineResult result = unwrapToAppIn();
                        if (result == null || result.getStatus() == SSLEngineResult.Status.CLOSED) {
                            throw new EOFException("client closed the connection during the TLS handshake");
                        }
                        status = result.getHandshakeStatus();
                        break;
                    }
                    case NEED_WRAP:
                        status = wrapAndFlush(new ByteBuffer[] {EMPTY}, 0, 1).getHandshakeStatus();
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
            sendAlert();
            throw e;
        }
        finally {
            writeLock.unlock();
            readLock.unlock();
        }
    }

    @Override
    public int read(ByteBuffer buffer)
            throws IOException
    {
        reference();
        readLock.lock();
        try {
            readOne[0] = buffer;
            return (int) read(readOne, 0, 1, false);
        }
        finally {
            readOne[0] = null;
            readLock.unlock();
            dereference();
        }
    }

    @Override
    public long read(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        reference();
        try {
            return read(buffers, offset, length, true);
        }
        finally {
            dereference();
        }
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
            copied += transfer(appIn, buffers[i]);
        }
        return copied;
    }

    /** Copies what fits of {@code from} into {@code to}, advancing both; returns the bytes copied. */
    private static int transfer(ByteBuffer from, ByteBuffer to)
    {
        int n = Math.min(from.remaining(), to.remaining());
        to.put(to.position(), from, from.position(), n);
        to.position(to.position() + n);
        from.position(from.position() + n);
        return n;
    }

    @Override
    public long write(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        reference();
        writeLock.lock();
        try {
            long total = 0;
            while (hasRemaining(buffers, offset, length) || plainOut.position() > 0) {
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
            dereference();
        }
    }

    @Override
    public void shutdownInput()
            throws IOException
    {
        transport.shutdownInput();
    }

    /**
     * Sends close_notify when no write is under way (a stalled writer must not hold up the close), then
     * closes the socket; the first close only, which holds the channel's own reference until done.
     */
    @Override
    public void close()
            throws IOException
    {
        if (!closed.compareAndSet(false, true)) {
            transport.close();
            return;
        }
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
            try {
                transport.close();
            }
            finally {
                dereference();
            }
        }
    }

    /** Takes a reference for a read or write; a channel whose engine is freed is closed. */
    private void reference()
            throws ClosedChannelException
    {
        while (true) {
            int count = references.get();
            if (count == 0) {
                throw new ClosedChannelException();
            }
            if (references.compareAndSet(count, count + 1)) {
                return;
            }
        }
    }

    private void dereference()
    {
        if (references.decrementAndGet() == 0) {
            engines.release(engine);
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
                    if (result.getHandshakeStatus() == HandshakeStatus.FINISHED) {
                        // netty's engine finishes the handshake inside the unwrap of the client's last
                        // flight but reports it only when asked again: this is that asking, and waiting
                        // for more input instead would wait for the client's next option
                        return result;
                    }
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

    /**
     * Wraps what fits of the buffers into records and writes them out. Under the write lock. Returns
     * when the buffers are all wrapped, or at the first status but OK or handshake status but
     * NOT_HANDSHAKING, with {@link #plainOut} empty unless the engine is closed.
     */
    private SSLEngineResult wrapAndFlush(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        netOut.clear();
        SSLEngineResult result;
        long consumed = 0;
        while (true) {
            int packet = engine.getSession().getPacketBufferSize();
            if (netOut.remaining() < packet) {
                if (netOut.position() > 0) {
                    // full: write out, the caller comes back for the rest
                    result = new SSLEngineResult(SSLEngineResult.Status.OK, HandshakeStatus.NOT_HANDSHAKING, 0, 0);
                    break;
                }
                // the session's packet size grew
                netOut = allocate(packet * RECORDS_PER_BUFFER);
            }
            if (plainOut.position() == 0 && shortOfRecord(buffers, offset, length, recordPlainText)) {
                consumed += gather(buffers, offset, length);
            }
            if (plainOut.position() > 0) {
                plainOut.flip();
                int gathered = plainOut.remaining();
                try {
                    result = engine.wrap(plainOut, netOut);
                }
                finally {
                    plainOut.compact();
                }
                if (result.getStatus() == SSLEngineResult.Status.OK && result.bytesConsumed() > 0 && result.bytesConsumed() < gathered
                        && gathered == recordPlainText) {
                    recordPlainText = result.bytesConsumed();
                }
            }
            else {
                result = engine.wrap(buffers, offset, length, netOut);
                consumed += result.bytesConsumed();
            }
            if (result.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                if (netOut.position() == 0) {
                    // less room than the engine asks for a record, although a packet's worth
                    netOut = allocate(netOut.capacity() * 2);
                    continue;
                }
                break;
            }
            if (result.getStatus() != SSLEngineResult.Status.OK || result.getHandshakeStatus() != HandshakeStatus.NOT_HANDSHAKING
                    || (plainOut.position() == 0 && !hasRemaining(buffers, offset, length))) {
                break;
            }
        }
        netOut.flip();
        while (netOut.hasRemaining()) {
            transport.write(netOut);
        }
        return new SSLEngineResult(result.getStatus(), result.getHandshakeStatus(), (int) consumed, 0);
    }

    /** Whether the first buffer with data holds less than a record and more data follows it. */
    private static boolean shortOfRecord(ByteBuffer[] buffers, int offset, int length, int recordPlainText)
    {
        int end = offset + length;
        int first = offset;
        while (first < end && !buffers[first].hasRemaining()) {
            first++;
        }
        return first < end && buffers[first].remaining() < recordPlainText && hasRemaining(buffers, first + 1, end - first - 1);
    }

    /** Copies from the buffers into {@link #plainOut} until it holds a record's worth or they are empty; returns the bytes copied. */
    private int gather(ByteBuffer[] buffers, int offset, int length)
    {
        plainOut.limit(recordPlainText);
        int copied = 0;
        for (int i = offset; i < offset + length && plainOut.hasRemaining(); i++) {
            copied += transfer(buffers[i], plainOut);
        }
        return copied;
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

    private ByteBuffer allocate(int capacity)
    {
        return engines.directBuffers() ? ByteBuffer.allocateDirect(capacity) : ByteBuffer.allocate(capacity);
    }

    /** A bigger buffer with the same contents; {@code readMode} says whether position..limit or 0..position hold them. */
    private ByteBuffer grow(ByteBuffer buffer, int atLeast, boolean readMode)
    {
        ByteBuffer bigger = allocate(Math.max(atLeast, buffer.capacity()) + buffer.capacity());
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
