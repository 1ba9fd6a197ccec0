package dev.jloop.nbd;

import java.util.concurrent.atomic.AtomicLong;

/**
 * What one connection has served, for its close log line and {@code jloop status}. Requests and
 * bytes are counted by the reader and errors by the writer, each the only thread writing its fields,
 * so a count is a plain store (release) that other threads may read at any time.
 */
final class NbdConnectionCounters
{
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong bytes = new AtomicLong();
    private final AtomicLong errors = new AtomicLong();

    /** Reader: one more request, with {@code payload} bytes read or written. */
    void request(long payload)
    {
        requests.lazySet(requests.get() + 1);
        bytes.lazySet(bytes.get() + payload);
    }

    /** Writer: one reply with an error. */
    void error()
    {
        errors.lazySet(errors.get() + 1);
    }

    long requests()
    {
        return requests.get();
    }

    long bytes()
    {
        return bytes.get();
    }

    long errors()
    {
        return errors.get();
    }
}
