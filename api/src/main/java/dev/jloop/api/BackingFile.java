package dev.jloop.api;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * The file behind a block device, after the seed's {@code file_operations} with {@code read_iter} and
 * {@code write_iter}. A backend (sync, nio, io_uring, or a third party's) implements this and is
 * found through its {@link BackendFactory}.
 *
 * <p>Every operation takes a {@link Kiocb} and returns either a result ({@code >= 0}, or
 * {@code -errno}) or {@link Kiocb#QUEUED}. A returned result is delivered to the kiocb's callback by
 * the submitter; after returning {@code QUEUED} the backend must call {@link Kiocb#complete(long)}
 * exactly once, from any thread, without holding locks the callback might need. Operations must not
 * throw for I/O failures: they report {@code -errno}.
 *
 * <p>The kiocb is the operation's one description: the position ({@link Kiocb#pos()}), the memory
 * ({@link Kiocb#iter()}), the flags, {@link Kiocb#datasync()} of an fsync, and the mode, offset and
 * length of an fallocate. The backend reads them and must not change them; the only change it makes
 * is to advance the iterator by the bytes it transferred (see {@link Kiocb}).
 *
 * <p><b>Short transfers.</b> A read or write may complete with fewer bytes than the iterator held, as
 * long as it transferred some ({@code res > 0}): it advances the iterator by {@code res} and leaves
 * the rest. The submitter (the loop device) resubmits the rest at {@code pos + res}; the backend
 * does not continue a completed kiocb itself. A read that returns 0 is at or past end of file (the
 * loop device reads zeros there); a write that returns 0 made no progress, which the loop device
 * fails with {@code -EIO}. Within one operation a backend may make as many system calls as it
 * likes, stopping at the first short one; what it returns is one transfer. A read or write of an
 * empty iterator returns 0.
 *
 * <p>Threading: what may call concurrently is declared by {@link Capabilities#threadModel()}.
 *
 * <p><b>The completion rule.</b> A completion runs where the backend calls
 * {@link Kiocb#complete(long)}: a reaper thread, a pool worker, a library's callback thread. Like the
 * kernel's completion context it must never wait for the file's capacity, for a lock the file's
 * submission path takes, or for the network. The loop device keeps its side of it: its completions
 * submit nothing to the file; follow-up work (the fdatasync that emulates FUA, the rest of a short
 * transfer, the writes that replace an unsupported zeroing) goes on the device's work queue and is
 * submitted from a thread that may wait. A backend keeps its side:
 * <ul>
 * <li>call {@link Kiocb#complete(long)} holding no lock that {@code readIter}, {@code writeIter},
 *     {@code fsync} or {@code fallocate} may wait for;</li>
 * <li>an operation may wait for free capacity (ring slots, a bounded queue) only up to the
 *     {@link Capabilities#queueDepth()} it declares: the loop device never has more than that many
 *     operations in flight on the file, and holds the rest itself. A backend that declares 0 must
 *     never wait for capacity at all.</li>
 * </ul>
 * What the device then holds back is bounded by the frontends: NBD's bytes-in-flight budget per
 * connection, ublk's queue depth per queue. The conformance kit floods every backend with follow-up
 * work under full capacity and fails a backend that hangs.
 *
 * <p><b>Not waiting.</b> A kiocb with {@link Kiocb#IOCB_NOWAIT} in its flags comes from a thread that
 * would rather not wait for another operation to finish (the loop device sets it on what a frontend's
 * thread submits; that thread may be an event loop whose own ring holds the operation it would wait
 * for). Like the kernel's {@code IOCB_NOWAIT}, the backend may then return {@code -EAGAIN}, having
 * done nothing, where it would otherwise wait (for example for a block range another write holds),
 * and the loop device submits the kiocb again, without the flag, from its work queue. A backend may
 * ignore the flag and wait as before.
 */
public interface BackingFile extends Closeable
{
    /**
     * Reads into the kiocb's iterator from its {@code pos}. Returns the bytes read (fewer than asked
     * is a short transfer; 0 at or past end of file), {@code -errno} or {@link Kiocb#QUEUED}.
     */
    long readIter(Kiocb kiocb);

    /**
     * Writes the kiocb's iterator at its {@code pos}; with {@link Kiocb#IOCB_DSYNC} in its flags the
     * data is durable before completion (only asked of backends whose capabilities declare native
     * FUA). Returns the bytes written (fewer than asked is a short transfer, never 0 for a non-empty
     * iterator), {@code -errno} or {@link Kiocb#QUEUED}.
     */
    long writeIter(Kiocb kiocb);

    /**
     * Makes every write that completed before this call durable ({@code fsync(2)}, or
     * {@code fdatasync(2)} when the kiocb's {@link Kiocb#datasync()}). Need not cover writes still in
     * flight. Returns 0, {@code -errno} or {@link Kiocb#QUEUED}.
     */
    long fsync(Kiocb kiocb);

    /**
     * {@code fallocate(2)} with the kiocb's {@link Fallocate} {@link Kiocb#mode() mode} bits over
     * {@code [pos, pos + length)}. Returns 0, {@code -EOPNOTSUPP} where the file system cannot,
     * another {@code -errno}, or {@link Kiocb#QUEUED}.
     */
    long fallocate(Kiocb kiocb);

    /**
     * Reports the data and hole ranges of {@code [offset, offset + length)}, a range inside the file,
     * in ascending, contiguous order, starting at {@code offset} (as {@code lseek(SEEK_DATA/SEEK_HOLE)}
     * does); the caller may stop early by returning {@code false} from the sink. Synchronous. Returns
     * 0 or {@code -errno}.
     *
     * <p>The loop device asks only a file that declares {@link Capabilities#extents()}; for any other
     * it reports every range as data itself. A file that does not declare extents and is asked all
     * the same (by a filter or a test) reports the whole range as {@link ExtentSink#DATA} and returns
     * 0, which is what this default does: "data" is never wrong, since data may hold zeros. It does
     * not fail with {@code -EOPNOTSUPP}.
     */
    default long extents(long offset, long length, ExtentSink sink)
    {
        if (length > 0) {
            sink.extent(offset, length, ExtentSink.DATA);
        }
        return 0;
    }

    /**
     * Starts bringing {@code [offset, offset + length)} into the host's page cache, for a read soon
     * (NBD_CMD_CACHE; {@code posix_fadvise(POSIX_FADV_WILLNEED)}). Advisory and synchronous: returns
     * 0 once the read-ahead is started (not finished), or {@code -errno}. Declare
     * {@link Capabilities#cache()} when it does something; the default does nothing.
     */
    default long cache(long offset, long length)
    {
        return 0;
    }

    /**
     * Current size in bytes, or {@code -errno} when it cannot be told (as {@code lseek(SEEK_END)});
     * never throws. The loop device reads it once, when it is created, and serves that many bytes; it
     * refuses a file whose size is an error.
     */
    long size();

    Capabilities capabilities();

    /**
     * Tells the file that request memory will come from these direct regions (page-pool slabs) for
     * as long as it is open, so that it may pin them once instead of per request (io_uring fixed
     * buffers). Called before the first request; a backend that cannot use it ignores it, and one
     * that fails to pin says so and carries on without. The caller keeps the regions reachable.
     */
    default void registerMemory(List<ByteBuffer> regions) {}

    /**
     * Submissions from this thread that follow may be held back until {@link #unplug()} (the
     * kernel's {@code blk_start_plug}), so that a backend can submit them as one batch. Plugs nest.
     */
    default void plug() {}

    /** Submits whatever this thread held back since the matching {@link #plug()}. */
    default void unplug() {}

    /**
     * Releases the file. Called once, after every submitted operation has completed.
     */
    @Override
    void close()
            throws IOException;
}
