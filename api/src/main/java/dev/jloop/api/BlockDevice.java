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

    /** What the device offers, resolved from its file's capabilities: frontends translate it, nothing more. */
    DeviceCapabilities capabilities();

    /** Starts the request; its end-io callback runs exactly once, possibly before this returns. */
    void submit(Bio bio);

    /**
     * Reports the data and hole ranges of {@code [offset, offset + length)} to {@code sink}, in
     * ascending, contiguous order from {@code offset} (as {@link BackingFile#extents}); the sink may
     * stop early. Synchronous and callable from any thread; meant for NBD block status and for
     * sparse reads. Returns 0 or {@code -errno} ({@code -EINVAL} for a range outside the device).
     *
     * <p>The default, for devices that cannot tell, reports the whole range as data, which is always
     * a correct answer.
     */
    default long extents(long offset, long length, ExtentSink sink)
    {
        if (offset < 0 || length < 0 || offset > size() || length > size() - offset) {
            return -Errno.EINVAL;
        }
        if (length > 0) {
            sink.extent(offset, length, ExtentSink.DATA);
        }
        return 0;
    }

    /**
     * Request memory will come from these direct regions; passed on to the backing file
     * ({@link BackingFile#registerMemory}). Called by the frontend before it submits anything.
     */
    default void registerMemory(List<ByteBuffer> regions) {}

    /**
     * The backing file this device hands its requests to itself, with nothing between them, or
     * {@code null} when there is none (filters between them, another kind of device). For a frontend
     * that lends the file something of its own thread (an io_uring event loop lends its ring to the
     * io_uring backend); requests still go through {@link #submit}, never to the file directly, but
     * for the reads of {@link #readServed} and the writes of {@link #writeServed}.
     */
    default BackingFile backingFile()
    {
        return null;
    }

    /**
     * Counts a READ of {@code length} bytes that a frontend served from {@link #backingFile()} itself
     * instead of submitting a bio (a zero-copy splice from the file to its socket, which reads only
     * the page cache and changes nothing), so that the device's statistics see it as any other READ:
     * {@code error} is 0 or {@code -errno}, {@code latencyNanos} the time from its start until the
     * data was read. Any thread. The default counts nothing.
     */
    default void readServed(long length, int error, long latencyNanos) {}

    /**
     * Counts a WRITE of {@code length} bytes that a frontend wrote into {@link #backingFile()} itself
     * instead of submitting a bio (a zero-copy splice from its socket into the file, at an offset the
     * frontend checked against {@link #size()} and on a device that is not read-only), so that the
     * device's statistics see it as any other WRITE: {@code error} is 0 or {@code -errno},
     * {@code latencyNanos} the time from its start until the data was in the file (and durable, for
     * FUA). A later flush of the device covers it as any completed write. Any thread. The default
     * counts nothing.
     */
    default void writeServed(long length, int error, long latencyNanos) {}

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
