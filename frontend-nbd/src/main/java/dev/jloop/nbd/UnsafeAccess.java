package dev.jloop.nbd;

import sun.misc.Unsafe;

import java.lang.reflect.Field;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * The two JDK internals the io_uring connection loop needs and the JDK does not offer: the
 * descriptor of a {@link SocketChannel} and the native address of a direct buffer, read as Netty
 * reads them, through {@code sun.misc.Unsafe} field offsets (no {@code --add-opens}, no allocation
 * per call). Where either is missing (another JDK), {@link #unavailabilityCause} says why and the
 * connections use their threads.
 */
final class UnsafeAccess
{
    private static final Unsafe UNSAFE;
    private static final Class<?> SOCKET_CHANNEL_IMPL;
    private static final long FD_VAL;
    private static final long ADDRESS;
    private static final String UNAVAILABILITY_CAUSE;

    static {
        Unsafe unsafe = null;
        Class<?> socketChannelImpl = null;
        long fdVal = -1;
        long address = -1;
        String cause = null;
        try {
            Field field = Unsafe.class.getDeclaredField("theUnsafe");
            field.setAccessible(true);
            unsafe = (Unsafe) field.get(null);
            socketChannelImpl = Class.forName("sun.nio.ch.SocketChannelImpl");
            fdVal = unsafe.objectFieldOffset(socketChannelImpl.getDeclaredField("fdVal"));
            address = unsafe.objectFieldOffset(Buffer.class.getDeclaredField("address"));
        }
        catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            cause = "socket descriptors and buffer addresses are not reachable on this JDK: " + e;
        }
        UNSAFE = unsafe;
        SOCKET_CHANNEL_IMPL = socketChannelImpl;
        FD_VAL = fdVal;
        ADDRESS = address;
        UNAVAILABILITY_CAUSE = cause;
    }

    private UnsafeAccess() {}

    static String unavailabilityCause()
    {
        return UNAVAILABILITY_CAUSE;
    }

    /** The descriptor of {@code socket}, or -1 when it is not a plain JDK socket channel. */
    static int fd(SocketChannel socket)
    {
        if (UNAVAILABILITY_CAUSE != null || !SOCKET_CHANNEL_IMPL.isInstance(socket)) {
            return -1;
        }
        return UNSAFE.getInt(socket, FD_VAL);
    }

    /** Native address of {@code buffer}'s index 0; the buffer must be direct. */
    static long address(ByteBuffer buffer)
    {
        return UNSAFE.getLong(buffer, ADDRESS);
    }
}
