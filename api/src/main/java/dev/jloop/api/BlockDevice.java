package dev.jloop.api;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * A block device as a frontend sees it: a size, capabilities, and asynchronous {@link Bio}s.
 * {@code LoopDevice} implements it over a {@link BackingFile}.
 *
 * <p>Semantics: a FLUSH completes after every write that completed before it was submitted is
 * durable; a write with {@link Bio#REQ_FUA} completes after it is durable; DISCARD may deallocate
 * (reads return zeros afterwards where the backend can punch holes, otherwise the data is
 * unspecified); WRITE_ZEROES makes the range read as zeros and keeps it allocated under
 * {@link Bio#REQ_NOUNMAP}. Requests in flight together are not ordered with respect to each other.
 *
 * <p>Threading: {@link #submit(Bio)} may be called from any number of threads at once and never
 * blocks on I/O (a serialising device queues instead).
 */
public interface BlockDevice extends Closeable
{
    long size();

    Capabilities capabilities();

    /** Starts the request; its end-io callback runs exactly once, possibly before this returns. */
    void submit(Bio bio);

    /**
     * Request memory will come from these direct regions; passed on to the backing file
     * ({@link BackingFile#registerMemory}). Called by the frontend before it submits anything.
     */
    default void registerMemory(List<ByteBuffer> regions) {}

    /** Bios submitted by this thread until {@link #unplug()} may be batched. Plugs nest. */
    default void plug() {}

    default void unplug() {}

    /**
     * Waits for requests in flight, makes written data durable, then closes the backing file.
     * No request may be submitted after this starts.
     */
    @Override
    void close()
            throws IOException;
}
