package dev.jloop.ublk;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Bio;
import dev.jloop.api.BioEndIo;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter;
import dev.jloop.iter.BvecIter;
import dev.jloop.iter.Page;
import dev.jloop.iter.PagePool;
import dev.jloop.posix.Errors;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.RingBorrower;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.util.Objects.requireNonNull;

/**
 * One hardware queue of a ublk device, served by one platform thread that owns the queue's ring.
 *
 * <p>The kernel binds every tag to the task that fetched it and refuses a COMMIT from any other
 * ({@code -EINVAL}, and the request hangs), so this thread issues every FETCH_REQ and
 * COMMIT_AND_FETCH_REQ itself and is never a pooled or virtual thread. It also must not block:
 * in older kernels the driver copies request data as task work in this thread's context. Backend
 * completions therefore arrive on other threads, are queued here, and wake the thread through an
 * eventfd read armed on its own ring.
 *
 * <p>With the io_uring backend and no filter between it and the device, the queue lends its ring
 * to the file ({@link LentRing}), as ublksrv's loop target issues its file I/O on the queue's ring:
 * the reads, writes, fsyncs and fallocates of this queue's requests go on the same ring as its
 * COMMIT_AND_FETCH_REQs and complete in this thread's reap, so a request costs one ring round trip
 * and no thread wake-up. The ring keeps room for every tag's command and the wakeup; file
 * operations that find no room are held and written at the next turn.
 *
 * <p>Per tag: one buffer of {@code bufferBytes} contiguous bytes from the {@link PagePool} (the kernel
 * copies WRITE data into it before the request's CQE and READ data out of it at commit), one
 * {@link Bio} and one {@link BvecIter}, reused for every request of the tag.
 *
 * <p>Shutdown: after STOP_DEV the kernel completes every fetched tag with {@code -ENODEV}; the thread
 * ends once every tag has been aborted and no request is in the backend. {@link #requestStop()} ends it
 * without the kernel's help (requests in flight still finish and are committed first); closing the
 * ring then cancels the remaining fetches.
 */
final class UblkQueue
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(UblkQueue.class);

    static final long WAKEUP = 1L << 32;

    private final int queueId;
    private final int depth;
    private final int bufferBytes;
    private final UblkDriver.CharDevice charDevice;
    private final BlockDevice device;
    private final PagePool pool;
    private final int fetchOp;
    private final int commitOp;

    private final Page[][] pages;
    private final long[] bufferAddress;
    private final Bio[] bios;
    private final BvecIter[] iters;
    private final int[] results;
    private final boolean[] inBackend;
    private final boolean[] aborted;

    /** Each tag boxed once, as the bios' private data. */
    private final Integer[] tags;
    private final BioEndIo endIoCallback = this::endIo;
    private final CompletionHandler completionHandler = this::onCompletion;
    /** The queue's mapped {@code ublksrv_io_desc} array; queue thread only. */
    private ByteBuffer descriptors;
    private final Object doneLock = new Object();
    private int[] done;
    private int nrDone;
    private int[] draining;

    private final AtomicBoolean wakeupPending = new AtomicBoolean();
    private final CountDownLatch fetched = new CountDownLatch(1);
    private final CountDownLatch exited = new CountDownLatch(1);
    private volatile boolean stopRequested;
    private volatile Throwable failure;
    /**
     * The queue's ring; set to null under {@link #ringLock} before it is closed, and every wakeup from
     * another thread happens under that lock, so no wakeup reaches a closed ring (its eventfd number
     * may already belong to another file, such as the backing file).
     */
    private volatile UblkDriver.QueueRing ring;
    /** The ring as lent to the device's file; queue thread only; null when not lent. */
    private LentRing lent;
    private RingBorrower borrower;
    private final Object ringLock = new Object();
    /** Requests received plus completions committed: grows while the kernel and the backend make progress. */
    private volatile long activity;
    private Thread thread;

    private int inFlight;
    private int live;
    private boolean wakeupArmed;

    /**
     * Requests of this queue handed to the device and not yet committed back, for the metrics: written
     * by the queue's thread only, read by others a moment late at worst.
     */
    int inFlight()
    {
        return inFlight;
    }

    UblkQueue(int queueId, int depth, int bufferBytes, boolean ioctlEncoding, UblkDriver.CharDevice charDevice, BlockDevice device, PagePool pool)
    {
        this.queueId = queueId;
        this.depth = depth;
        this.bufferBytes = bufferBytes;
        this.charDevice = requireNonNull(charDevice, "charDevice is null");
        this.device = requireNonNull(device, "device is null");
        this.pool = requireNonNull(pool, "pool is null");
        this.fetchOp = ioctlEncoding ? UblkCmd.ioctlIo(UblkCmd.IO_FETCH_REQ) : UblkCmd.IO_FETCH_REQ;
        this.commitOp = ioctlEncoding ? UblkCmd.ioctlIo(UblkCmd.IO_COMMIT_AND_FETCH_REQ) : UblkCmd.IO_COMMIT_AND_FETCH_REQ;
        this.pages = new Page[depth][];
        this.bufferAddress = new long[depth];
        this.bios = new Bio[depth];
        this.iters = new BvecIter[depth];
        this.results = new int[depth];
        this.inBackend = new boolean[depth];
        this.aborted = new boolean[depth];
        this.done = new int[depth];
        this.draining = new int[depth];
        this.tags = new Integer[depth];
        for (int tag = 0; tag < depth; tag++) {
            tags[tag] = tag;
            bios[tag] = new Bio();
            iters[tag] = new BvecIter();
        }
    }

    /** Starts the queue's thread; it fetches every tag, then serves. */
    void start()
    {
        thread = new Thread(this, "ublk-queue-" + queueId);
        thread.setDaemon(true);
        thread.start();
    }

    /** Waits until every tag has been fetched (START_DEV may follow), or throws what stopped the thread. */
    void awaitFetched(long timeoutMillis)
            throws IOException, InterruptedException
    {
        if (!fetched.await(timeoutMillis, TimeUnit.MILLISECONDS)) {
            throw new IOException("ublk queue " + queueId + " did not fetch its tags within " + timeoutMillis + " ms");
        }
        Throwable cause = failure;
        if (cause != null) {
            if (cause instanceof IOException) {
                throw (IOException) cause;
            }
            throw new IOException("ublk queue " + queueId + " failed: " + cause, cause);
        }
    }

    /** Ends the thread without waiting for the kernel's aborts; requests in the backend still complete first. */
    void requestStop()
    {
        stopRequested = true;
        wakeup();
    }

    /** Wakes the queue thread unless a wakeup is pending already or the ring is gone. */
    private void wakeup()
    {
        if (wakeupPending.getAndSet(true)) {
            return;
        }
        synchronized (ringLock) {
            UblkDriver.QueueRing r = ring;
            if (r != null) {
                r.wakeup();
            }
        }
    }

    /** Grows with every request received and every completion committed; read by other threads. */
    long activity()
    {
        return activity;
    }

    boolean awaitExit(long timeoutMillis)
            throws InterruptedException
    {
        return exited.await(timeoutMillis, TimeUnit.MILLISECONDS);
    }

    Throwable failure()
    {
        return failure;
    }

    @Override
    public void run()
    {
        UblkDriver.IoDescriptors descriptors = null;
        try {
            descriptors = charDevice.mapDescriptors(queueId, depth);
            BackingFile file = device.backingFile();
            if (file instanceof RingBorrower) {
                borrower = (RingBorrower) file;
                ring = charDevice.openQueueRing(depth, borrower);
                LentRing lentRing = ring.lentRing();
                if (lentRing != null && borrower.borrow(lentRing)) {
                    lent = lentRing;
                }
            }
            else {
                ring = charDevice.openQueueRing(depth);
            }
            allocateBuffers();
            for (int tag = 0; tag < depth; tag++) {
                prepIoCmd(fetchOp, tag, 0);
            }
            armWakeup();
            ring.submitAndWait(0);
            live = depth;
            fetched.countDown();
            this.descriptors = descriptors.buffer();
            serve();
        }
        catch (Throwable t) {
            failure = t;
            log.error("ublk queue {} stopped: {}", queueId, t.toString());
        }
        finally {
            fetched.countDown();
            closeQuietly(descriptors);
            freeBuffers();
            exited.countDown();
        }
    }

    private void serve()
            throws IOException
    {
        while (true) {
            commitCompleted();
            if ((stopRequested || live == 0) && inFlight == 0) {
                // the commits just prepared carry results the kernel still waits for
                ring.submitAndWait(0);
                return;
            }
            if (!wakeupArmed) {
                armWakeup();
            }
            prepareHeld();
            ring.submitAndWait(1);
            device.plug();
            try {
                ring.reap(completionHandler);
            }
            finally {
                device.unplug();
            }
        }
    }

    /** File operations that found no room on the lent ring: written now, entering as often as the SQ fills. */
    private void prepareHeld()
            throws IOException
    {
        if (lent == null) {
            return;
        }
        while (lent.prepareHeld()) {
            if (ring.submitAndWait(0) < 0) {
                // -EAGAIN/-EBUSY: the rest waits for the next turn, after this one's reap
                return;
            }
        }
    }

    private void onCompletion(long userData, int res, int flags)
    {
        if ((userData & LentRing.BORROWED) != 0) {
            // the file's own I/O for a request of this queue; its bio ends here, on this thread
            lent.complete(userData, res, flags);
            return;
        }
        if (userData == WAKEUP) {
            wakeupArmed = false;
            wakeupPending.set(false);
            return;
        }
        int tag = (int) userData;
        if (res == UblkCmd.IO_RES_OK) {
            handleRequest(tag);
            return;
        }
        if (res != -Errors.ENODEV) {
            log.error("ublk queue {} tag {}: the driver refused a command: {}", queueId, tag, Errors.name(res));
        }
        if (!aborted[tag]) {
            aborted[tag] = true;
            live--;
        }
    }

    private void handleRequest(int tag)
    {
        int opFlags = UblkStructs.descOpFlags(descriptors, tag);
        long offset = UblkStructs.descStartSector(descriptors, tag) << 9;
        long length = (UblkStructs.descNrSectors(descriptors, tag) & 0xffffffffL) << 9;
        int flags = (opFlags & UblkCmd.IO_F_FUA) != 0 ? Bio.REQ_FUA : 0;
        Bio bio = bios[tag];
        switch (opFlags & 0xff) {
            case UblkCmd.OP_READ:
            case UblkCmd.OP_WRITE:
                if (length > bufferBytes) {
                    finishNow(tag, -Errno.EINVAL);
                    return;
                }
                boolean read = (opFlags & 0xff) == UblkCmd.OP_READ;
                iters[tag].reset(read ? IovIter.Direction.DEST : IovIter.Direction.SOURCE, pages[tag], 1, length);
                bio.init(read ? Bio.Op.READ : Bio.Op.WRITE, offset, length, flags, iters[tag]);
                break;
            case UblkCmd.OP_FLUSH:
                bio.init(Bio.Op.FLUSH, 0, 0, 0, null);
                break;
            case UblkCmd.OP_DISCARD:
                bio.init(Bio.Op.DISCARD, offset, length, flags, null);
                break;
            case UblkCmd.OP_WRITE_ZEROES:
                bio.init(Bio.Op.WRITE_ZEROES, offset, length, flags | ((opFlags & UblkCmd.IO_F_NOUNMAP) != 0 ? Bio.REQ_NOUNMAP : 0), null);
                break;
            default:
                finishNow(tag, -Errno.EOPNOTSUPP);
                return;
        }
        activity++;
        inBackend[tag] = true;
        inFlight++;
        bio.setEndIo(endIoCallback, tags[tag]);
        device.submit(bio);
    }

    private void finishNow(int tag, int result)
    {
        results[tag] = result;
        synchronized (doneLock) {
            done[nrDone++] = tag;
        }
    }

    /** Bio completion, on any thread: queue the tag and wake the queue thread unless a wakeup is pending. */
    private void endIo(Bio bio, int error)
    {
        int tag = (Integer) bio.privateData();
        Bio.Op op = bio.op();
        results[tag] = error < 0 ? error : (op == Bio.Op.READ || op == Bio.Op.WRITE ? (int) bio.length() : 0);
        synchronized (doneLock) {
            done[nrDone++] = tag;
        }
        if (Thread.currentThread() != thread) {
            wakeup();
        }
    }

    private void commitCompleted()
            throws IOException
    {
        int n;
        synchronized (doneLock) {
            n = nrDone;
            int[] swap = done;
            done = draining;
            draining = swap;
            nrDone = 0;
        }
        for (int i = 0; i < n; i++) {
            int tag = draining[i];
            if (inBackend[tag]) {
                inBackend[tag] = false;
                inFlight--;
            }
            prepIoCmd(commitOp, tag, results[tag]);
        }
        if (n > 0) {
            activity += n;
        }
    }

    private void prepIoCmd(int cmdOp, int tag, int result)
            throws IOException
    {
        while (!ring.prepIoCmd(cmdOp, queueId, tag, result, bufferAddress[tag], tag)) {
            ring.submitAndWait(0);
        }
    }

    private void armWakeup()
            throws IOException
    {
        while (!ring.prepWakeup(WAKEUP)) {
            ring.submitAndWait(0);
        }
        wakeupArmed = true;
    }

    private void allocateBuffers()
            throws InterruptedException
    {
        for (int tag = 0; tag < depth; tag++) {
            Page[] tagPages = new Page[PagePool.maxPages(bufferBytes)];
            int n = pool.allocate(bufferBytes, tagPages);
            pages[tag] = tagPages;
            if (n != 1) {
                throw new IllegalStateException("ublk needs one contiguous buffer of " + bufferBytes + " bytes per tag, the page pool gave " + n + " pages");
            }
            bufferAddress[tag] = tagPages[0].address();
        }
    }

    private void freeBuffers()
    {
        if (lent != null) {
            if (lent.inFlight() > 0 || lent.hasHeld()) {
                // Not expected: the queue ends with no request in the backend. Their slots stay taken.
                log.error("ublk queue {} closes its ring with file operations in flight: {}", queueId, lent);
            }
            borrower.giveBack(lent);
            lent = null;
        }
        UblkDriver.QueueRing r;
        synchronized (ringLock) {
            r = ring;
            ring = null;
        }
        if (r != null) {
            // closing the ring cancels the fetches still pending, before their buffers go back to the pool
            r.close();
        }
        for (int tag = 0; tag < depth; tag++) {
            if (pages[tag] != null && !inBackend[tag]) {
                int n = 0;
                while (n < pages[tag].length && pages[tag][n] != null) {
                    n++;
                }
                pool.free(pages[tag], n);
                pages[tag] = null;
            }
        }
    }

    private static void closeQuietly(UblkDriver.IoDescriptors descriptors)
    {
        if (descriptors != null) {
            descriptors.close();
        }
    }
}
