package dev.jloop.nbd.channel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

import static java.util.Objects.requireNonNull;

/** A connection on a socket: an accepted one, or the one jloop was started with (--stdio). */
final class SocketNbdChannel
        implements NbdChannel
{
    private final SocketChannel socket;
    private final boolean inherited;

    /**
     * @param inherited the socket came from {@link System#inheritedChannel()}: {@link #close()} then
     *     shuts it down instead of closing it, because closing an inherited channel makes the JDK
     *     point descriptors 0, 1 and 2 at /dev/null (sun.nio.ch.InheritedChannel), and the log on
     *     stderr would be lost. The process's exit closes it.
     */
    SocketNbdChannel(SocketChannel socket, boolean inherited)
    {
        this.socket = requireNonNull(socket, "socket is null");
        this.inherited = inherited;
    }

    @Override
    public int read(ByteBuffer buffer)
            throws IOException
    {
        return socket.read(buffer);
    }

    @Override
    public long read(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        return socket.read(buffers, offset, length);
    }

    @Override
    public long write(ByteBuffer[] buffers, int offset, int length)
            throws IOException
    {
        return socket.write(buffers, offset, length);
    }

    @Override
    public void shutdownInput()
            throws IOException
    {
        socket.shutdownInput();
    }

    @Override
    public SocketChannel socket()
    {
        return socket;
    }

    @Override
    public void close()
            throws IOException
    {
        if (!inherited) {
            try {
                // An io_uring receive or send in flight holds its own reference to the socket, which
                // close(2) alone would leave open and waiting: shutdown(2) ends them.
                socket.shutdownInput();
                socket.shutdownOutput();
            }
            catch (IOException e) {
                // not connected any more
            }
            socket.close();
            return;
        }
        try {
            socket.shutdownInput();
        }
        finally {
            socket.shutdownOutput();
        }
    }
}
