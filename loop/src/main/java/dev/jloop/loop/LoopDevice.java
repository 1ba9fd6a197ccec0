package dev.jloop.loop;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Bio;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.Capabilities;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.DeviceCapabilities.Support;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.KvecIter;
import dev.jloop.loop.stats.DeviceStats;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

import static java.util.Objects.requireNonNull;

/**
 * A block device over a {@link BackingFile}: the loop driver with the seed's change. Each {@link Bio}
 * becomes a {@link Kiocb} submitted through {@link AioKernel}; many run at once when the backend is
 * {@link ThreadModel#PARALLEL}.
 *
 * <p>With a {@link ThreadModel#SERIALIZE_ALL_REQUESTS} backend (the sync backend) the device runs one
 * worker thread that takes one request at a time and finishes it before taking the next: the loop
 * driver before asynchronous I/O, kept as the baseline.
 *
 * <p>Semantics on top of the backend:
 * <ul>
 * <li>FLUSH is an fdatasync: it covers every write completed before it (the only ones a client may
 *     count on, since requests in flight together are unordered).</li>
 * <li>FUA: a write with {@link Kiocb#IOCB_DSYNC} where the backend declares native FUA, else the
 *     write followed by an fdatasync before completion.</li>
 * <li>DISCARD punches a hole (size kept) where the backend can; it is advisory, so a file system
 *     that cannot punch holes still completes it successfully.</li>
 * <li>WRITE_ZEROES punches a hole, or with {@link Bio#REQ_NOUNMAP} zeroes the range in place
 *     ({@code FALLOC_FL_ZERO_RANGE}); where fallocate is unsupported it writes zeros, unless
 *     {@link Bio#REQ_NOFALLBACK} asks it to fail with {@code -EOPNOTSUPP} instead.</li>
 * <li>CACHE starts a read-ahead ({@link BackingFile#cache}) where the backend declares it, and
 *     otherwise succeeds doing nothing: it is advisory.</li>
 * <li>{@link #extents} asks the backing file (SEEK_DATA/SEEK_HOLE) where it declares extents. All
 *     exports' connections share this one device and file, so a FLUSH from any of them covers the
 *     writes completed on all of them (what NBD's multi-conn needs).</li>
 * <li>Short reads and writes are resubmitted for the rest, at {@code pos + res} with what is left of
 *     the iterator: the device is the one place that continues a short transfer (the contract in
 *     {@link BackingFile}). A read that returns 0 is past end of file and reads zeros; a write that
 *     returns 0 fails with {@code -EIO}.</li>
 * </ul>
 *
 * <p>Completions never wait (the rule in {@link BackingFile}'s javadoc). A completion that needs more
 * work on the file (FUA's fdatasync, the rest of a short transfer, zeros written where fallocate
 * cannot zero) does not submit it: it hands the kiocb to the device's worker thread, the loop driver's
 * work queue, which submits it and may wait doing so. Only a completion that runs inside one of this
 * thread's own submissions (a backend that answered at once) queues its follow-up on a per-thread
 * trampoline instead, submitted as soon as that submission returns; so that path costs no hand-off
 * and never recurses more than one level.
 *
 * <p>What a frontend's thread submits carries {@link Kiocb#IOCB_NOWAIT}: that thread may be an event
 * loop whose own ring holds the very operation the file would wait for (a block range held by a write
 * on the loop's ring), so a file may answer {@code -EAGAIN} instead of waiting, and the device
 * resubmits the kiocb from its worker without the flag, as the kernel punts such a kiocb to a worker.
 *
 * <p>The device keeps at most {@link Capabilities#queueDepth()} kiocbs in flight on the file (when the
 * file declares a depth). A submission beyond it waits in the same work queue, not in the file, so a
 * frontend's thread never blocks on the file's capacity. The work queue is unbounded by itself;
 * what it holds is bounded by what the frontends let in: NBD's bytes in flight per connection, ublk's
 * queue depth.
 */
public final class LoopDevice
        implements BlockDevice, KiocbCompletion
{
    private static final Logger log = LoggerFactory.getLogger(LoopDevice.class);

    /** Zeros written where fallocate cannot zero; aligned so that O_DIRECT backends take it as is. */
    private static final int ZERO_CHUNK = 1 << 20;
    private static final ByteBuffer ZEROS = DirectMemory.allocateAligned(ZERO_CHUNK).asReadOnlyBuffer();
    private static final long CLOSE_TIMEOUT_SECONDS = 60;

    private final BackingFile file;
    private final AioKernel aio;
    private final Capabilities fileCapabilities;
    private final DeviceCapabilities capabilities;
    private final long size;
    private final ThreadLocal<Trampoline> trampoline = ThreadLocal.withInitial(Trampoline::new);
    private final AtomicInteger inFlight = new AtomicInteger();
    /** Counted when a bio ends; null where nothing is counted (a benchmark's baseline). */
    private final DeviceStats stats;
    private volatile boolean closed;

    /** Kiocbs on the file at most; 0 when the file never makes a submitter wait. */
    private final int queueDepth;
    /** Kiocbs submitted to the file and not completed yet (counted only with a queue depth). */
    private final AtomicInteger onFile = new AtomicInteger();
    /** The work queue: kiocbs for the worker to submit, in order. */
    private final ConcurrentLinkedQueue<Kiocb> deferred = new ConcurrentLinkedQueue<>();
    private final Thread worker;
    private volatile boolean stopping;

    // Serialised mode only: the requests waiting for the worker, and the one it serves.
    private final ConcurrentLinkedQueue<Bio> requests;
    private volatile Bio current;

    /**
     * A device over {@code file}, of the size the file reports now. The caller keeps the file until
     * this returns (and closes it when this throws).
     *
     * @throws UncheckedIOException when the file's {@link BackingFile#size()} is an error
     */
    public LoopDevice(BackingFile file, AioKernel aio, String name)
    {
        this(file, aio, name, new DeviceStats());
    }

    /** As above, counting into {@code stats}, or counting nothing when it is {@code null}. */
    public LoopDevice(BackingFile file, AioKernel aio, String name, DeviceStats stats)
    {
        this.stats = stats;
        this.file = requireNonNull(file, "file is null");
        this.aio = requireNonNull(aio, "aio is null");
        this.fileCapabilities = file.capabilities();
        this.capabilities = resolve(fileCapabilities);
        this.size = file.size();
        if (size < 0) {
            throw new UncheckedIOException(new IOException("the backing file reports no size: " + Errno.name(size)));
        }
        boolean serialised = fileCapabilities.threadModel() == ThreadModel.SERIALIZE_ALL_REQUESTS;
        // One request at a time has at most one kiocb on the file: nothing to count.
        this.queueDepth = serialised ? 0 : fileCapabilities.queueDepth();
        this.requests = serialised ? new ConcurrentLinkedQueue<>() : null;
        this.worker = new Thread(this::work, "loop-" + name);
        worker.setDaemon(true);
        worker.start();
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public DeviceCapabilities capabilities()
    {
        return capabilities;
    }

    /**
     * What this device offers over a file that can do {@code file}: FUA natively or as the write and an
     * fdatasync, zeroing by fallocate or by writing zeros, fast zeroing always (a zeroing the file
     * cannot do fails at once under {@link Bio#REQ_NOFALLBACK}), nothing that writes when read-only.
     */
    public static DeviceCapabilities resolve(Capabilities file)
    {
        boolean writable = !file.readOnly();
        Support fua = !writable ? Support.NONE : file.nativeFua() ? Support.NATIVE : file.flush() ? Support.EMULATED : Support.NONE;
        Support zero = !writable ? Support.NONE : file.zero() ? Support.NATIVE : Support.EMULATED;
        return DeviceCapabilities.builder()
                .readOnly(file.readOnly())
                .flush(file.flush())
                .fua(fua)
                .trim(writable && file.trim())
                .zero(zero)
                .fastZero(zero != Support.NONE)
                .cache(file.cache() ? Support.NATIVE : Support.NONE)
                .extents(file.extents())
                .multiConn(file.multiConn())
                .logicalBlockSize(file.logicalBlockSize())
                .build();
    }

    /** What this device counted of the bios that ended; {@code null} when it counts nothing. */
    public DeviceStats stats()
    {
        return stats;
    }

    /** Bios submitted and not yet ended. */
    public int inFlight()
    {
        return inFlight.get();
    }

    @Override
    public void submit(Bio bio)
    {
        if (stats != null) {
            bio.setIssueTime(System.nanoTime());
        }
        inFlight.incrementAndGet();
        int error = validate(bio);
        if (error != 0) {
            end(bio, error);
            return;
        }
        if (requests == null) {
            start(bio);
            return;
        }
        requests.add(bio);
        LockSupport.unpark(worker);
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (closed) {
            return -Errno.ESHUTDOWN;
        }
        if (offset < 0 || length < 0 || offset > size || length > size - offset) {
            return -Errno.EINVAL;
        }
        if (length == 0) {
            return 0;
        }
        if (!capabilities.extents()) {
            sink.extent(offset, length, ExtentSink.DATA);
            return 0;
        }
        return file.extents(offset, length, sink);
    }

    /** The file as it was given: the outermost filter when there are filters. */
    @Override
    public BackingFile backingFile()
    {
        return file;
    }

    @Override
    public void readServed(long length, int error, long latencyNanos)
    {
        if (stats != null) {
            stats.op(Bio.Op.READ).record(latencyNanos, length, error);
        }
    }

    @Override
    public void writeServed(long length, int error, long latencyNanos)
    {
        if (stats != null) {
            stats.op(Bio.Op.WRITE).record(latencyNanos, length, error);
        }
    }

    @Override
    public void registerMemory(List<ByteBuffer> regions)
    {
        file.registerMemory(regions);
    }

    @Override
    public void plug()
    {
        aio.plug(file);
    }

    @Override
    public void unplug()
    {
        // Completions reaped while submitting the batch start their follow-ups from here, not from the reaper.
        Trampoline t = trampoline.get();
        if (t.active) {
            aio.unplug(file);
            return;
        }
        t.active = true;
        try {
            aio.unplug(file);
        }
        finally {
            t.active = false;
        }
        Kiocb next = t.pending.poll();
        if (next != null) {
            submit(next);
        }
    }

    private int validate(Bio bio)
    {
        if (closed) {
            return -Errno.ESHUTDOWN;
        }
        Bio.Op op = bio.op();
        if (op == null) {
            return -Errno.EINVAL;
        }
        if (op == Bio.Op.FLUSH) {
            return 0;
        }
        long offset = bio.offset();
        long length = bio.length();
        if (offset < 0 || length < 0 || offset > size || length > size - offset) {
            return -Errno.EINVAL;
        }
        if ((op == Bio.Op.READ || op == Bio.Op.WRITE) && (bio.iter() == null || bio.iter().count() != length)) {
            return -Errno.EINVAL;
        }
        if (op != Bio.Op.READ && op != Bio.Op.CACHE && capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        return 0;
    }

    /**
     * The worker: submits what completions deferred and, for a serialised file, starts the next request
     * once the last one has ended. It may wait for the file; nothing waits for it but the work queue.
     */
    private void work()
    {
        while (true) {
            try {
                submitDeferred();
                if (requests != null && current == null) {
                    Bio bio = requests.poll();
                    if (bio != null) {
                        current = bio;
                        start(bio);
                        continue;
                    }
                }
            }
            catch (RuntimeException | Error e) {
                // Everything it calls completes or ends what it took even when it fails; the worker must outlive a bug.
                log.error("loop worker of {}", file, e);
            }
            if (stopping) {
                return;
            }
            LockSupport.park(this);
        }
    }

    /** Worker: submits deferred kiocbs, in order, while the file has room. */
    private void submitDeferred()
    {
        Trampoline t = trampoline.get();
        t.active = true;
        try {
            while (!deferred.isEmpty() && admit()) {
                submitToFile(deferred.poll());
                Kiocb next;
                while ((next = t.pending.poll()) != null) {
                    deferred.add(next);
                }
            }
        }
        finally {
            t.active = false;
        }
    }

    private void start(Bio bio)
    {
        Kiocb kiocb = aio.alloc().initCallback(this, bio);
        switch (bio.op()) {
            case READ:
            case WRITE:
                if (bio.length() == 0) {
                    finish(kiocb, bio, 0);
                    return;
                }
                kiocb.initRw(bio.op() == Bio.Op.READ ? Kiocb.Op.READ : Kiocb.Op.WRITE, file, bio.iter(), bio.offset(),
                        bio.fua() && capabilities.fua() == Support.NATIVE ? Kiocb.IOCB_DSYNC : 0);
                break;
            case FLUSH:
                kiocb.initFsync(file, true);
                break;
            case DISCARD:
                if (!capabilities.trim() || bio.length() == 0) {
                    afterDataOp(kiocb, bio);
                    return;
                }
                kiocb.initFallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, bio.offset(), bio.length());
                break;
            case WRITE_ZEROES:
                if (bio.length() == 0) {
                    afterDataOp(kiocb, bio);
                    return;
                }
                if (capabilities.zero() != Support.NATIVE) {
                    if (bio.noFallback()) {
                        finish(kiocb, bio, -Errno.EOPNOTSUPP);
                        return;
                    }
                    writeZeros(kiocb, bio, bio.offset());
                    return;
                }
                int mode = bio.noUnmap() ? Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE : Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE;
                kiocb.initFallocate(file, mode, bio.offset(), bio.length());
                break;
            case CACHE: {
                long res = capabilities.cache() == Support.NATIVE && bio.length() > 0 ? file.cache(bio.offset(), bio.length()) : 0;
                // Advisory: a file system that cannot read ahead has still done all that was asked.
                finish(kiocb, bio, res == -Errno.EOPNOTSUPP || res == -Errno.ENOSYS ? 0 : (int) res);
                return;
            }
            default:
                finish(kiocb, bio, -Errno.EINVAL);
                return;
        }
        submit(kiocb);
    }

    @Override
    public void complete(Kiocb kiocb, long res)
    {
        if (queueDepth > 0) {
            onFile.decrementAndGet();
            if (!deferred.isEmpty()) {
                LockSupport.unpark(worker);
            }
        }
        if (res == -Errno.EAGAIN && (kiocb.flags() & Kiocb.IOCB_NOWAIT) != 0) {
            // The file would have waited for another operation: the worker submits it again, and may wait.
            defer(kiocb);
            return;
        }
        Bio bio = (Bio) kiocb.privateData();
        if (res < 0 && !(res == -Errno.EOPNOTSUPP && kiocb.op() == Kiocb.Op.FALLOCATE)) {
            finish(kiocb, bio, (int) res);
            return;
        }
        switch (kiocb.op()) {
            case READ:
                IovIter iter = kiocb.iter();
                if (iter.count() > 0) {
                    if (res == 0) {
                        // Past end of file (the file shrank under us): the device reads zeros there.
                        iter.zero(iter.count());
                    }
                    else {
                        resubmitRw(kiocb, res);
                        return;
                    }
                }
                finish(kiocb, bio, 0);
                return;
            case WRITE:
                if (kiocb.iter().count() > 0) {
                    if (res == 0) {
                        finish(kiocb, bio, -Errno.EIO);
                    }
                    else {
                        resubmitRw(kiocb, res);
                    }
                    return;
                }
                if (bio.op() == Bio.Op.WRITE_ZEROES) {
                    long next = kiocb.pos() + res;
                    if (next < bio.offset() + bio.length()) {
                        writeZeros(kiocb, bio, next);
                        return;
                    }
                }
                afterDataOp(kiocb, bio);
                return;
            case FALLOCATE:
                if (res == -Errno.EOPNOTSUPP) {
                    if (bio.op() == Bio.Op.WRITE_ZEROES) {
                        if (bio.noFallback()) {
                            finish(kiocb, bio, -Errno.EOPNOTSUPP);
                            return;
                        }
                        writeZeros(kiocb, bio, bio.offset());
                        return;
                    }
                    // DISCARD is a hint: a file system that cannot punch holes just keeps the data.
                }
                afterDataOp(kiocb, bio);
                return;
            case FSYNC:
            default:
                finish(kiocb, bio, 0);
        }
    }

    /** After a write, zeroing or discard: FUA needs an fsync unless the write itself was durable. */
    private void afterDataOp(Kiocb kiocb, Bio bio)
    {
        boolean wroteDurably = bio.op() == Bio.Op.WRITE && capabilities.fua() == Support.NATIVE;
        if (bio.fua() && !wroteDurably && capabilities.flush()) {
            kiocb.initFsync(file, true);
            followUp(kiocb);
            return;
        }
        finish(kiocb, bio, 0);
    }

    /** The rest of a short transfer: the backend left {@code pos} where it was and advanced the iterator by {@code res}. */
    private void resubmitRw(Kiocb kiocb, long res)
    {
        kiocb.initRw(kiocb.op(), file, kiocb.iter(), kiocb.pos() + res, kiocb.flags());
        followUp(kiocb);
    }

    /** Writes the zeros of {@code [from, bio end)} one chunk at a time (the fallocate fallback). */
    private void writeZeros(Kiocb kiocb, Bio bio, long from)
    {
        long length = Math.min(ZERO_CHUNK, bio.offset() + bio.length() - from);
        IovIter zeros = KvecIter.of(IovIter.Direction.SOURCE, ZEROS.duplicate().limit((int) length));
        kiocb.initRw(Kiocb.Op.WRITE, file, zeros, from, 0);
        followUp(kiocb);
    }

    private void finish(Kiocb kiocb, Bio bio, int error)
    {
        aio.free(kiocb);
        end(bio, error);
        if (requests != null) {
            current = null;
            LockSupport.unpark(worker);
        }
    }

    private void end(Bio bio, int error)
    {
        if (stats != null) {
            stats.ended(bio, error, System.nanoTime() - bio.issueTime());
        }
        inFlight.decrementAndGet();
        try {
            bio.endIo(error);
        }
        catch (RuntimeException e) {
            log.error("end-io callback failed for {}", bio, e);
        }
    }

    /**
     * Submits from a submission context (a frontend's thread, the worker) through this thread's
     * trampoline: a follow-up made by a completion that ran inside the submission waits for it to
     * return. Behind a non-empty work queue, or with the file full, the kiocb joins the queue.
     */
    private void submit(Kiocb kiocb)
    {
        Trampoline t = trampoline.get();
        if (t.active) {
            t.pending.add(kiocb);
            return;
        }
        t.active = true;
        try {
            Kiocb next = kiocb;
            do {
                if (deferred.isEmpty() && admit()) {
                    submitToFile(next);
                }
                else {
                    defer(next);
                }
            }
            while ((next = t.pending.poll()) != null);
        }
        finally {
            t.active = false;
        }
    }

    /**
     * The next step of a request whose kiocb just completed. Inside this thread's own submission it
     * waits on the trampoline; anywhere else this is a completion context, which must not submit.
     */
    private void followUp(Kiocb kiocb)
    {
        Trampoline t = trampoline.get();
        if (t.active) {
            t.pending.add(kiocb);
        }
        else {
            defer(kiocb);
        }
    }

    /**
     * Submits to the file, with {@link Kiocb#IOCB_NOWAIT} from a frontend's thread (an event loop may
     * be the one thread that would complete what the file waits for) and without it from the worker,
     * which may wait.
     */
    private void submitToFile(Kiocb kiocb)
    {
        int flags = kiocb.flags();
        kiocb.setFlags(Thread.currentThread() == worker ? flags & ~Kiocb.IOCB_NOWAIT : flags | Kiocb.IOCB_NOWAIT);
        aio.submit(kiocb);
    }

    private void defer(Kiocb kiocb)
    {
        deferred.add(kiocb);
        LockSupport.unpark(worker);
    }

    /** Takes room for one kiocb on the file, if it has room. */
    private boolean admit()
    {
        if (queueDepth == 0) {
            return true;
        }
        while (true) {
            int n = onFile.get();
            if (n >= queueDepth) {
                return false;
            }
            if (onFile.compareAndSet(n, n + 1)) {
                return true;
            }
        }
    }

    /**
     * Makes every write this device acknowledged durable, as a FLUSH request from a client would, while
     * requests go on; for an owner that must keep the device open (a frontend that could not stop).
     *
     * @return 0, or the {@code -errno} of the failed flush
     * @throws TimeoutException when the flush did not finish in time
     */
    public int flush(long timeout, TimeUnit unit)
            throws InterruptedException, TimeoutException
    {
        CompletableFuture<Integer> flushed = new CompletableFuture<>();
        submit(new Bio().init(Bio.Op.FLUSH, 0, 0, 0, null).setEndIo((bio, error) -> flushed.complete(error), null));
        try {
            return flushed.get(timeout, unit);
        }
        catch (ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
    }

    /**
     * Refuses new requests, waits for those in flight, flushes and closes the backing file.
     */
    @Override
    public void close()
            throws IOException
    {
        if (closed) {
            return;
        }
        closed = true;
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(CLOSE_TIMEOUT_SECONDS);
            while (inFlight.get() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            stopping = true;
            LockSupport.unpark(worker);
            worker.join(TimeUnit.SECONDS.toMillis(CLOSE_TIMEOUT_SECONDS));
            if (inFlight.get() > 0) {
                throw new IOException(inFlight.get() + " requests still in flight after " + CLOSE_TIMEOUT_SECONDS + " s");
            }
            if (!aio.awaitIdle(CLOSE_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                throw new IOException("requests still in flight after " + CLOSE_TIMEOUT_SECONDS + " s");
            }
            if (!capabilities.readOnly() && capabilities.flush()) {
                long res = fsyncNow();
                if (res < 0) {
                    throw new IOException("flush on close failed: " + Errno.name(res));
                }
            }
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while closing");
        }
        finally {
            file.close();
        }
    }

    private long fsyncNow()
            throws InterruptedException
    {
        CompletableFuture<Long> result = new CompletableFuture<>();
        Kiocb kiocb = aio.alloc().initFsync(file, true).initCallback((k, res) -> result.complete(res), null);
        aio.submit(kiocb);
        try {
            return result.get();
        }
        catch (ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
        finally {
            aio.free(kiocb);
        }
    }

    private static final class Trampoline
    {
        private final ArrayDeque<Kiocb> pending = new ArrayDeque<>();
        private boolean active;
    }
}
