package dev.jloop.nbd;

import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.tls.NbdTls;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

import static dev.jloop.nbd.NbdProtocol.REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static java.util.Objects.requireNonNull;

/**
 * The connection as the handshake uses it: blocking, exact-length reads, so nothing the client sends
 * after the handshake is consumed here; option data skipped unread; and option replies, each in one
 * write so that a reply is one segment on the wire. After NBD_OPT_STARTTLS everything goes through
 * the TLS channel. Heap buffers are fine: this runs once per connection, on its reader thread.
 */
final class NbdOptionChannel
{
    private NbdChannel channel;
    private final ByteBuffer header = ByteBuffer.allocate(20);

    /**
     * The unsent cap of a TLS connection ({@link NbdUringLoop#limitUnsent}), served on threads whose
     * writes block at the cap: 128 KiB against none, 32 and 256 KiB took nbdcopy's reading out over
     * TLS from 1.04 to 0.94 s, a tenth less (docs/nbd.md, "TLS").
     */
    static final int TLS_UNSENT_LIMIT = 128 << 10;

    NbdOptionChannel(NbdChannel channel)
    {
        this.channel = requireNonNull(channel, "channel is null");
    }

    /** The connection's channel: the one given, or the TLS channel after {@link #startTls}. */
    NbdChannel channel()
    {
        return channel;
    }

    /**
     * Runs the TLS handshake; from then on the connection is encrypted, and over TCP its socket holds at
     * most {@value #TLS_UNSENT_LIMIT} bytes unsent.
     */
    void startTls(NbdTls tls, String peer)
            throws IOException
    {
        NbdChannel transport = channel;
        channel = tls.startTls(transport);
        int socketFd = UnsafeAccess.fd(transport.socket());
        if (socketFd >= 0) {
            NbdUringLoop.limitUnsent(transport, socketFd, peer, TLS_UNSENT_LIMIT);
        }
    }

    /** Exactly {@code length} bytes, ready to be read. */
    ByteBuffer read(int length)
            throws IOException
    {
        ByteBuffer buffer = ByteBuffer.allocate(length);
        while (buffer.hasRemaining()) {
            if (channel.read(buffer) < 0) {
                throw new EOFException("client closed the connection during the handshake");
            }
        }
        return buffer.flip();
    }

    /** Reads and drops {@code length} bytes. */
    void skip(long length)
            throws IOException
    {
        ByteBuffer scratch = ByteBuffer.allocate(8192);
        while (length > 0) {
            scratch.clear().limit((int) Math.min(scratch.capacity(), length));
            int n = channel.read(scratch);
            if (n < 0) {
                throw new EOFException("client closed the connection during the handshake");
            }
            length -= n;
        }
    }

    void write(ByteBuffer buffer)
            throws IOException
    {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }

    /** NBD_REP_ACK, with no data. */
    void ack(int opt)
            throws IOException
    {
        reply(opt, REP_ACK, ByteBuffer.allocate(0));
    }

    /** An option reply: the reply header and {@code data}. */
    void reply(int opt, int type, ByteBuffer data)
            throws IOException
    {
        header.clear()
                .putLong(REPLY_MAGIC)
                .putInt(opt)
                .putInt(type)
                .putInt(data.remaining())
                .flip();
        ByteBuffer[] buffers = {header, data};
        while (header.hasRemaining() || data.hasRemaining()) {
            channel.write(buffers);
        }
    }
}
