package dev.jloop.api;

/**
 * Thrown by {@link Frontend#close()} when the frontend could not stop and still serves its exports'
 * devices: a ublk {@code STOP_DEV} that the kernel does not answer, while it may still send the
 * disk's writeback. The devices must then stay open (they may be flushed) until the process ends.
 */
public final class StillServingException
        extends RuntimeException
{
    public StillServingException(String message, Throwable cause)
    {
        super(message, cause);
    }
}
