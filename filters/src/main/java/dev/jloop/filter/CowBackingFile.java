package dev.jloop.filter;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.KvecIter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;

import static dev.jloop.filter.CowOverlay.BELOW;
import static dev.jloop.filter.CowOverlay.DATA;
import static dev.jloop.filter.CowOverlay.ZERO;
import static java.util.Objects.requireNonNull;

/**
 * The file the {@code cow} filter serves: the file below (opened read-only) with a {@link CowOverlay}
 * on top. See {@link CowFilterFactory} for what it does; this is how.
 *
 * <p>Threads. An operation that touches the overlay runs on the filter's own worker threads, where it
 * may wait: for the overlay's file, for the lock of a block, for a read from below (a child kiocb
 * whose completion only hands the result back). It then completes the caller's kiocb holding no
 * lock. So the caller's thread never waits, a completion never waits, and the file below never
 * sees its own completion thread wait for it. A read of blocks that are all still below needs no
 * worker: it goes down as it came ({@link #passDown}).
 *
 * <p>Order. Every change of a block (a write, a zeroing) holds that block's lock from the moment it
 * looks at the block's state until it has set the new one, so two writes into one block never copy
 * it up from below at once and lose each other's bytes. A block's data reaches the overlay before
 * its state says so, which is what lets reads go without the lock: a read that finds a block in the
 * overlay finds its data there.
 */
final class CowBackingFile
        extends ForwardingBackingFile
{
    private static final Logger log = LoggerFactory.getLogger(CowBackingFile.class);
    private static final int WORKERS = 8;
    private static final int BLOCK_LOCKS = 64;
    private static final long CLOSE_TIMEOUT_SECONDS = 60;

    private final CowOverlay overlay;
    private final String name;
    private final long size;
    private final int blockSize;
    private final Capabilities capabilities;
    private final ThreadPoolExecutor workers;
    private final ReentrantLock[] blockLocks = new ReentrantLock[BLOCK_LOCKS];
    private final ByteBuffer zeros;
    /** Per worker: the block being copied up, aligned for a file below opened O_DIRECT. */
    private final ThreadLocal<ByteBuffer> blockBuffer;
    private volatile boolean closed;

    CowBackingFile(BackingFile below, CowOverlay overlay, boolean readOnly, String name)
    {
        super(below);
        this.overlay = requireNonNull(overlay, "overlay is null");
        this.name = requireNonNull(name, "name is null");
        this.size = overlay.size();
        this.blockSize = overlay.blockSize();
        Capabilities own = below.capabilities();
        boolean serialised = own.threadModel() == ThreadModel.SERIALIZE_ALL_REQUESTS;
        // Each operation has at most one kiocb on the file below at a time, so the depth below holds for this file too.
        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                .nativeFua(false)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .cache(own.cache())
                .threadModel(own.threadModel())
                .logicalBlockSize(own.logicalBlockSize())
                .queueDepth(own.queueDepth())
                .build();
        for (int i = 0; i < blockLocks.length; i++) {
            blockLocks[i] = new ReentrantLock();
        }
        this.zeros = ByteBuffer.allocateDirect(blockSize).asReadOnlyBuffer();
        this.blockBuffer = ThreadLocal.withInitial(() -> DirectMemory.allocateAligned(blockSize));
        int threads = serialised ? 1 : WORKERS;
        AtomicInteger counter = new AtomicInteger();
        this.workers = new ThreadPoolExecutor(threads, threads, 30, TimeUnit.SECONDS, new LinkedBlockingQueue<>(), runnable -> {
            Thread thread = new Thread(runnable, "jloop-cow-" + name + "-" + counter.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        });
        workers.allowCoreThreadTimeOut(true);
    }

    CowOverlay overlay()
    {
        return overlay;
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        long pos = kiocb.pos();
        if (closed) {
            return -Errno.EBADF;
        }
        if (pos < 0) {
            return -Errno.EINVAL;
        }
        if (pos >= size || kiocb.iter().count() == 0) {
            return 0;
        }
        long end = Math.min(size, pos + kiocb.iter().count());
        if (overlay.allBelow(pos / blockSize, blockAfter(end))) {
            return passDown(kiocb, (child, res) -> kiocb.complete(res));
        }
        return queue(kiocb, this::read);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        if (kiocb.pos() < 0) {
            return -Errno.EINVAL;
        }
        if (kiocb.iter().count() == 0) {
            return 0;
        }
        if (kiocb.pos() >= size) {
            return -Errno.ENOSPC;
        }
        return queue(kiocb, this::write);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return queue(kiocb, ignored -> {
            overlay.flush();
            return 0;
        });
    }

    // Mode rules as vfs_fallocate() in fs/open.c: punching needs KEEP_SIZE, and punch and zero exclude each other.
    @Override
    public long fallocate(Kiocb kiocb)
    {
        int mode = kiocb.mode();
        if (closed) {
            return -Errno.EBADF;
        }
        if (kiocb.pos() < 0 || kiocb.length() <= 0) {
            return -Errno.EINVAL;
        }
        if ((mode & ~(Fallocate.KEEP_SIZE | Fallocate.PUNCH_HOLE | Fallocate.ZERO_RANGE)) != 0) {
            return -Errno.EOPNOTSUPP;
        }
        boolean punch = (mode & Fallocate.PUNCH_HOLE) != 0;
        boolean zero = (mode & Fallocate.ZERO_RANGE) != 0;
        boolean keepSize = (mode & Fallocate.KEEP_SIZE) != 0;
        if (punch && (zero || !keepSize)) {
            return -Errno.EOPNOTSUPP;
        }
        if (capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        if (!keepSize && kiocb.pos() + kiocb.length() > size) {
            // the disk's size is the size of the file below, which is never changed
            return -Errno.EFBIG;
        }
        if (!punch && !zero) {
            // plain allocation: every block reads as it did
            return 0;
        }
        return queue(kiocb, this::zero);
    }

    /**
     * The data and holes of the disk: a block in the overlay is data, a zeroed one a hole (it takes no
     * space in the overlay either), and blocks still below are as the file below reports them.
     * Adjacent ranges of one type are reported as one.
     */
    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (offset < 0 || length < 0) {
            return -Errno.EINVAL;
        }
        long end = Math.min(size, offset + length);
        Coalescing out = new Coalescing(sink);
        for (long at = offset; at < end && !out.stopped; ) {
            CowOverlay.Run run = overlay.run(at / blockSize, blockAfter(end));
            long runEnd = Math.min(end, run.end() * blockSize);
            if (run.state() == BELOW) {
                long[] next = {at};
                long res = delegate().extents(at, runEnd - at, (from, n, type) -> {
                    long to = Math.min(runEnd, from + n);
                    if (from != next[0] || to <= from) {
                        return false;
                    }
                    next[0] = to;
                    return out.extent(from, to - from, type) && to < runEnd;
                });
                if (res < 0) {
                    return res;
                }
                if (next[0] < runEnd) {
                    // a report that stopped short: what it left out is data, which is never wrong
                    out.extent(next[0], runEnd - next[0], ExtentSink.DATA);
                }
            }
            else {
                out.extent(at, runEnd - at, run.state() == DATA ? ExtentSink.DATA : ExtentSink.HOLE | ExtentSink.ZERO);
            }
            at = runEnd;
        }
        out.finish();
        return 0;
    }

    @Override
    public void close()
            throws IOException
    {
        if (closed) {
            return;
        }
        closed = true;
        workers.shutdown();
        IOException failure = null;
        try {
            if (!workers.awaitTermination(CLOSE_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                failure = new IOException("operations on " + name + " still running after " + CLOSE_TIMEOUT_SECONDS + " s");
            }
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failure = new IOException("interrupted while closing " + name, e);
        }
        failure = closeAfter(failure, overlay);
        failure = closeAfter(failure, delegate());
        if (failure != null) {
            throw failure;
        }
    }

    private static IOException closeAfter(IOException failure, Closeable closeable)
    {
        try {
            closeable.close();
        }
        catch (IOException e) {
            if (failure == null) {
                return e;
            }
            failure.addSuppressed(e);
        }
        return failure;
    }

    @Override
    public String toString()
    {
        return "CowBackingFile{" + overlay + " over " + delegate() + "}";
    }

    // ---------------------------------------------------------------- on a worker

    private interface Work
    {
        long run(Kiocb kiocb)
                throws IOException;
    }

    /** Runs {@code work} on a worker, which completes {@code kiocb} with its result. */
    private long queue(Kiocb kiocb, Work work)
    {
        try {
            workers.execute(() -> {
                long res;
                try {
                    res = work.run(kiocb);
                }
                catch (IOException e) {
                    res = errno(e);
                    log.warn("{} on {}: {}", kiocb.op(), name, e.toString());
                }
                catch (RuntimeException e) {
                    res = -Errno.EIO;
                    log.error("{} on {}", kiocb.op(), name, e);
                }
                kiocb.complete(res);
            });
        }
        catch (RejectedExecutionException e) {
            return -Errno.EBADF;
        }
        return Kiocb.QUEUED;
    }

    /**
     * Reads run by run of blocks in one state. A failure after some bytes, or a short read from below,
     * ends the read short; the caller asks again for the rest.
     */
    private long read(Kiocb kiocb)
            throws IOException
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        long end = Math.min(size, pos + iter.count());
        long done = 0;
        while (pos + done < end) {
            long at = pos + done;
            CowOverlay.Run run = overlay.run(at / blockSize, blockAfter(end));
            long n = Math.min(end, run.end() * blockSize) - at;
            switch (run.state()) {
                case DATA -> {
                    long before = iter.count();
                    try {
                        readOverlay(iter, at, n);
                    }
                    catch (IOException e) {
                        iter.revert(before - iter.count());
                        if (done > 0) {
                            return done;
                        }
                        throw e;
                    }
                }
                case ZERO -> iter.zero(n);
                default -> {
                    long res = readBelow(iter, at, n);
                    if (res < 0) {
                        return done > 0 ? done : res;
                    }
                    if (res < n) {
                        return done + res;
                    }
                }
            }
            done += n;
        }
        return done;
    }

    /** Writes block by block; a failure after some blocks ends the write short. */
    private long write(Kiocb kiocb)
            throws IOException
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        long end = Math.min(size, pos + iter.count());
        long done = 0;
        while (pos + done < end) {
            long at = pos + done;
            long block = at / blockSize;
            int inBlock = (int) (at - block * blockSize);
            int n = (int) Math.min(end - at, blockLength(block) - inBlock);
            long before = iter.count();
            try {
                change(block, inBlock, n, iter);
            }
            catch (IOException e) {
                iter.revert(before - iter.count());
                if (done > 0) {
                    return done;
                }
                throw e;
            }
            done += n;
        }
        if ((kiocb.flags() & Kiocb.IOCB_DSYNC) != 0) {
            overlay.flush();
        }
        return done;
    }

    /** Trim and zero alike: whole blocks become zero blocks, the parts of blocks at the ends are zeroed in the overlay. */
    private long zero(Kiocb kiocb)
            throws IOException
    {
        long end = Math.min(size, kiocb.pos() + kiocb.length());
        for (long at = kiocb.pos(); at < end; ) {
            long block = at / blockSize;
            int inBlock = (int) (at - block * blockSize);
            int n = (int) Math.min(end - at, blockLength(block) - inBlock);
            change(block, inBlock, n, null);
            at += n;
        }
        return 0;
    }

    /**
     * Writes {@code n} bytes of {@code iter} (zeros when {@code null}) into {@code block} at
     * {@code inBlock}, under the block's lock. A part of a block is copied up first: the whole block
     * from where it is read now, changed, and written to the overlay whole.
     */
    private void change(long block, int inBlock, int n, IovIter iter)
            throws IOException
    {
        long blockStart = block * blockSize;
        int length = blockLength(block);
        ReentrantLock lock = blockLocks[(int) (block % BLOCK_LOCKS)];
        lock.lock();
        try {
            if (n == length) {
                if (iter == null) {
                    overlay.setState(block, ZERO);
                    return;
                }
                writeOverlay(iter, blockStart, n);
                overlay.setState(block, DATA);
                return;
            }
            byte state = overlay.state(block);
            if (iter == null && state == ZERO) {
                return;
            }
            ByteBuffer buffer = blockBuffer.get().clear().limit(length);
            switch (state) {
                case DATA -> overlay.read(buffer, blockStart);
                case ZERO -> buffer.put(zeros.duplicate().limit(length));
                default -> readBelowFully(buffer, blockStart);
            }
            buffer.clear().position(inBlock).limit(inBlock + n);
            if (iter == null) {
                buffer.put(zeros.duplicate().limit(n));
            }
            else {
                iter.copyFromIter(buffer);
            }
            buffer.clear().limit(length);
            overlay.write(buffer, blockStart);
            overlay.setState(block, DATA);
        }
        finally {
            lock.unlock();
        }
    }

    private void readOverlay(IovIter iter, long at, long n)
            throws IOException
    {
        for (long left = n; left > 0; ) {
            ByteBuffer segment = iter.segmentBuffer(0);
            int length = (int) Math.min(left, segment.remaining());
            segment.limit(segment.position() + length);
            overlay.read(segment, at + n - left);
            iter.advance(length);
            left -= length;
        }
    }

    private void writeOverlay(IovIter iter, long at, long n)
            throws IOException
    {
        for (long left = n; left > 0; ) {
            ByteBuffer segment = iter.segmentBuffer(0);
            int length = (int) Math.min(left, segment.remaining());
            segment.limit(segment.position() + length);
            overlay.write(segment, at + n - left);
            iter.advance(length);
            left -= length;
        }
    }

    /** Reads up to {@code n} bytes from below into {@code iter}, waiting; returns what the file below returned. */
    private long readBelow(IovIter iter, long at, long n)
    {
        long count = iter.count();
        iter.truncate(n);
        long res = callBelow(new Kiocb(null).initRw(Kiocb.Op.READ, delegate(), iter, at, 0));
        iter.reexpand(count - Math.max(0, res));
        return res;
    }

    /** Fills {@code buffer} from below at {@code at}; zeros past the end of the file below. */
    private void readBelowFully(ByteBuffer buffer, long at)
            throws IOException
    {
        IovIter iter = KvecIter.of(IovIter.Direction.DEST, buffer.duplicate());
        long done = 0;
        while (iter.count() > 0) {
            long res = readBelow(iter, at + done, iter.count());
            if (res < 0) {
                throw new BelowException(res);
            }
            if (res == 0) {
                iter.zero(iter.count());
                break;
            }
            done += res;
        }
        buffer.position(buffer.limit());
    }

    /**
     * Runs {@code child} on the file below and waits for its result. Only a worker calls it: the
     * child's completion does nothing but hand the result over, so it never waits.
     */
    private static long callBelow(Kiocb child)
    {
        CompletableFuture<Long> result = new CompletableFuture<>();
        child.initCallback((kiocb, res) -> result.complete(res), null);
        child.submitToFile();
        return result.join();
    }

    private long blockAfter(long end)
    {
        return (end + blockSize - 1) / blockSize;
    }

    private int blockLength(long block)
    {
        return (int) Math.min(blockSize, size - block * blockSize);
    }

    /** The errno of a failure: the JDK gives only strerror's text, and a full disk must say ENOSPC. */
    private static long errno(IOException e)
    {
        if (e instanceof BelowException below) {
            return below.res;
        }
        String message = e.getMessage();
        return message != null && message.contains("No space left on device") ? -Errno.ENOSPC : -Errno.EIO;
    }

    /** A read from below that failed with {@code -errno}, on its way up. */
    private static final class BelowException
            extends IOException
    {
        final long res;

        BelowException(long res)
        {
            super("read from below: " + Errno.name(res));
            this.res = res;
        }
    }

    /** Joins adjacent extents of one type, and stops for good once the sink says so. */
    private static final class Coalescing
    {
        private final ExtentSink sink;
        private long offset;
        private long length;
        private int type;
        boolean stopped;

        Coalescing(ExtentSink sink)
        {
            this.sink = sink;
        }

        boolean extent(long from, long n, int kind)
        {
            if (stopped) {
                return false;
            }
            if (length > 0 && kind == type && from == offset + length) {
                length += n;
                return true;
            }
            finish();
            offset = from;
            length = n;
            type = kind;
            return !stopped;
        }

        void finish()
        {
            if (length > 0 && !stopped) {
                stopped = !sink.extent(offset, length, type);
            }
            length = 0;
        }
    }
}
