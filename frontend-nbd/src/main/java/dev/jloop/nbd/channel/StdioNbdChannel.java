package dev.jloop.nbd.channel;

import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.Channel;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;

import static java.util.Objects.requireNonNull;

/**
 * The connection of {@code --stdio}: standard input and output. libnbd's {@code nbd_connect_command}
 * passes one end of a socket pair as both, which {@link System#inheritedChannel()} hands over as a
 * {@link SocketChannel} (Unix sockets since Java 16); two pipes work too, read from one and
 * written to the other. A terminal is refused: NBD is binary.
 */
public final class StdioNbdChannel
        implements NbdChannel
{
    private final FileChannel in;
    private final FileChannel out;

    private StdioNbdChannel(FileChannel in, FileChannel out)
    {
        this.in = requireNonNull(in, "in is null");
        this.out = requireNonNull(out, "out is null");
    }

    public static NbdChannel open()
            throws IOException
    {
        Channel inherited = System.inheritedChannel();
        if (inherited instanceof SocketChannel) {
            SocketChannel socket = (SocketChannel) inherited;
            socket.configureBlocking(true);
            return new SocketNbdChannel(socket, true);
        }
        if (inherited != null) {
            throw new IOException("standard input is a listening socket, not a connection: use --socket or socket activation instead of --stdio");
        }
        if (System.console() != null) {
            throw new IOException("standard input and output are a terminal; --stdio speaks NBD to a client that starts jloop, "
                    + "e.g. nbdinfo -- [ jloop serve --stdio FILE ]");
        }
        return new StdioNbdChannel(new FileInputStream(FileDescriptor.in).getChannel(), new FileOutputStream(FileDescriptor.out).getChannel());
    }

    @Override
    public int read(ByteBuffer buffer)
            throws IOException
    {
        return in.read(buffer);
    }

    @Override
    public long read(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        return in.read(buffers, offset, length);
    }

    @Override
    public long write(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        return out.write(buffers, offset, length);
    }

    @Override
    public void shutdownInput()
            throws IOException
    {
        in.close();
    }

    @Override
    public void close()
            throws IOException
    {
        try {
            in.close();
        }
        finally {
            out.close();
        }
    }
}
