package dev.jloop.api;

import java.io.Closeable;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * A running frontend: serves its exports from {@link FrontendFactory#create} until {@link #close()}.
 */
public interface Frontend extends Closeable
{
    /** Where clients find it, for example {@code nbd://127.0.0.1:10809/} or {@code nbd+unix:///?socket=/run/x.sock}. */
    String uri();

    /**
     * Variables for a command that jloop starts to use this frontend ({@code --run}), as nbdkit's
     * {@code --run} sets them: the NBD frontend gives {@code uri}, {@code exportname}, {@code tls} and
     * {@code unixsocket} or {@code port}; the ublk frontend {@code device}. Empty by default.
     */
    default Map<String, String> environment()
    {
        return Map.of();
    }

    /**
     * Whether this frontend serves on the process's standard input and output (one client on
     * {@code --stdio}): then nothing else may write there, and jloop reports on standard error.
     */
    default boolean usesStandardStreams()
    {
        return false;
    }

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
     * Its clients, page pool and queues now, for {@code jloop status} and the metrics; called from any
     * thread, rarely (a scrape, a status request), so it may take locks the request path does not.
     */
    default FrontendStatus status()
    {
        return FrontendStatus.NONE;
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
