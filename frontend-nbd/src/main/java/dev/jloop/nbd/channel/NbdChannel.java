package dev.jloop.nbd.channel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * The byte stream of one NBD connection: a plain socket, or the same socket after STARTTLS. Reads
 * and writes block; one thread reads while another writes.
 */
public interface NbdChannel
{
    /** Reads at least one byte unless at end of input; returns -1 there. */
    int read(ByteBuffer buffer)
            throws IOException;

    /** Scattering read into {@code buffers[offset .. offset + length)}, as {@link SocketChannel#read(ByteBuffer[], int, int)}. */
    long read(ByteBuffer[] buffers, int offset, int length)
            throws IOException;

    /** Writes some bytes; callers loop until the buffers are drained. */
    long write(ByteBuffer[] buffers, int offset, int length)
            throws IOException;

    default long write(ByteBuffer... buffers)
            throws IOException
    {
        return write(buffers, 0, buffers.length);
    }

    /** Makes the reader see end of input while replies can still be written. */
    void shutdownInput()
            throws IOException;

    void close()
            throws IOException;

    /** The plain socket under this channel, for a connection loop that does its own socket I/O; {@code null} for TLS and pipes. */
    default SocketChannel socket()
    {
        return null;
    }

    static NbdChannel of(SocketChannel socket)
    {
        return new SocketNbdChannel(socket, false);
    }
}
