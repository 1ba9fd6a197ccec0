package dev.jloop.api;

import java.io.Closeable;

/**
 * A running frontend: serves its exports from {@link FrontendFactory#create} until {@link #close()}.
 */
public interface Frontend extends Closeable
{
    /** Where clients find it, for example {@code nbd://127.0.0.1:10809/} or {@code nbd+unix:///?socket=/run/x.sock}. */
    String uri();

    /**
     * Stops accepting, lets requests in flight finish and their replies go out, closes every
     * connection. Does not close the exports' devices (their creator does). Idempotent.
     */
    @Override
    void close();
}
