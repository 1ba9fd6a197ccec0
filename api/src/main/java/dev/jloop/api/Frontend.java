package dev.jloop.api;

import java.io.Closeable;
import java.util.concurrent.CountDownLatch;

/**
 * A running frontend: serves its exports from {@link FrontendFactory#create} until {@link #close()}.
 */
public interface Frontend extends Closeable
{
    /** Where clients find it, for example {@code nbd://127.0.0.1:10809/} or {@code nbd+unix:///?socket=/run/x.sock}. */
    String uri();

    /**
     * Blocks until this frontend stops serving on its own, as one that serves a single client on
     * standard input/output does when that client leaves, or until {@link #close()}. A listening
     * frontend serves until it is closed; the default waits until the thread is interrupted.
     */
    default void awaitEnd()
            throws InterruptedException
    {
        new CountDownLatch(1).await();
    }

    /**
     * Stops accepting, lets requests in flight finish and their replies go out, closes every
     * connection. Does not close the exports' devices (their creator does, once this returned).
     * Idempotent.
     *
     * @throws StillServingException when it could not stop and still uses the devices, which must then
     *         stay open
     */
    @Override
    void close();
}
