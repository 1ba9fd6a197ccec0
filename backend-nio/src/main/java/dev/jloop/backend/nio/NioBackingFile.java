package dev.jloop.backend.nio;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.posix.BlockRangeLock;
import dev.jloop.posix.BounceIo;
import dev.jloop.posix.Extents;
import dev.jloop.posix.FileDescriptor;
import dev.jloop.posix.Posix;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.file.OpenOption;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static java.util.Objects.requireNonNull;

/**
 * A backing file served by {@link FileChannel} positional reads and writes on a pool of platform
 * threads, one per request in flight up to {@value #MAX_WORKERS}. {@code FileChannel} I/O blocks, so
 * the pool gives the parallelism; {@code AsynchronousFileChannel} would be the same thing with a
 * thread pool that grows without bound and a {@code Runnable} per request. The pool starts empty,
 * adds a worker when a request finds none idle, and a worker idle for {@value #KEEP_ALIVE_SECONDS}
 * seconds ends: an idle server holds no threads.
 *
 * <p>Reads, writes, fsyncs and fallocates return {@link Kiocb#QUEUED}: the kiocb itself goes on a
 * bounded queue, a worker takes it, does the I/O and calls {@link Kiocb#complete(long)}. Nothing is
 * allocated per request. Only direct buffers reach the channel: segments of direct iterators as they
 * are, heap iterators through the worker's own aligned bounce buffer (see {@link BounceIo}).
 * {@code fallocate} and extents go through a second descriptor of the same file ({@link Posix}),
 * which the JDK has no API for.
 *
 * <p>Under {@code O_DIRECT} every write and fallocate holds its blocks exclusively in a
 * {@link BlockRangeLock} with room for one range per worker, so the read-modify-write of a partial
 * block never races another write of that block.
 *
 * <p>{@link #close()} lets the workers finish what is queued, then stops them. If a worker does not
 * stop within {@value #CLOSE_TIMEOUT_SECONDS} seconds (an operation stuck in the kernel, or a
 * completion callback that blocks) it is interrupted, and kiocbs still queued, or submitted after
 * close, complete with {@code -ECANCELED}; operations submitted after close return {@code -EBADF}.
 */
public final class NioBackingFile
        implements BackingFile
{
    static final int MAX_WORKERS = 64;
    static final long KEEP_ALIVE_SECONDS = 60;
    private static final int BOUNCE_SIZE = 128 * 1024;
    private static final int CLOSE_TIMEOUT_SECONDS = 10;

    private static final Logger log = LoggerFactory.getLogger(NioBackingFile.class);
    /** Tells a worker to exit; queued behind the real work, so the queue drains first. */
    private static final Kiocb STOP = new Kiocb(null);

    private final FileChannel channel;
    private final FileDescriptor fd;
    private final int fdNumber;
    private final boolean readOnly;
    private final boolean direct;
    private final Capabilities capabilities;
    private final ArrayBlockingQueue<Kiocb> queue;
    private final BlockRangeLock blockLock;
    private final int maxWorkers;
    private final long keepAliveNanos;
    private final String workerName;
    /** Guarded by itself; {@link #closed} changes only under it too, so no worker starts after close. */
    private final Set<Thread> workers = new HashSet<>();
    private final AtomicInteger liveWorkers = new AtomicInteger();
    private final AtomicInteger idleWorkers = new AtomicInteger();
    private int workersStarted;
    private volatile boolean closed;

    private NioBackingFile(FileChannel channel, FileDescriptor fd, BackendConfig config, long keepAliveNanos)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.fd = requireNonNull(fd, "fd is null");
        this.fdNumber = fd.intValue();
        this.readOnly = config.readOnly();
        this.direct = config.direct();
        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                .nativeFua(false)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .cache(!direct)
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(direct ? BounceIo.DIRECT_BLOCK_SIZE : 1)
                .queueDepth(config.queueDepth())
                .build();
        this.maxWorkers = Math.min(config.queueDepth(), MAX_WORKERS);
        this.keepAliveNanos = keepAliveNanos;
        this.workerName = "jloop-nio-" + config.path().getFileName() + "-";
        // room for every request the frontend may keep in flight, plus one STOP per worker
        this.queue = new ArrayBlockingQueue<>(Math.max(config.queueDepth(), maxWorkers) + maxWorkers);
        this.blockLock = new BlockRangeLock(maxWorkers);
    }

    /** Opens {@code config.path()}; see {@link FileDescriptor#openBackingFile} for the failures. */
    public static NioBackingFile open(BackendConfig config)
            throws IOException
    {
        return open(config, TimeUnit.SECONDS.toNanos(KEEP_ALIVE_SECONDS));
    }

    static NioBackingFile open(BackendConfig config, long keepAliveNanos)
            throws IOException
    {
        FileDescriptor fd = FileDescriptor.openBackingFile(config.path(), config.readOnly(), config.direct());
        try {
            Set<OpenOption> options = new HashSet<>();
            options.add(StandardOpenOption.READ);
            if (!config.readOnly()) {
                options.add(StandardOpenOption.WRITE);
            }
            if (config.direct()) {
                options.add(com.sun.nio.file.ExtendedOpenOption.DIRECT);
            }
            FileChannel channel = FileChannel.open(config.path(), options);
            return new NioBackingFile(channel, fd, config, keepAliveNanos);
        }
        catch (IOException | RuntimeException e) {
            try {
                fd.close();
            }
            catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        return enqueue(kiocb);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        if (readOnly) {
            return -Errno.EPERM;
        }
        return enqueue(kiocb);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        return enqueue(kiocb);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        if (readOnly) {
            return -Errno.EPERM;
        }
        return enqueue(kiocb);
    }

    private long enqueue(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (!queue.offer(kiocb)) {
            // more in flight than the queue depth we were opened with: wait for a worker
            try {
                queue.put(kiocb);
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return -Errno.EINTR;
            }
        }
        if (idleWorkers.get() == 0) {
            startWorker();
        }
        return Kiocb.QUEUED;
    }

    /** Adds a worker unless there are {@link #maxWorkers} already or the file is closed. */
    private void startWorker()
    {
        synchronized (workers) {
            if (closed || liveWorkers.get() >= maxWorkers) {
                return;
            }
            liveWorkers.incrementAndGet();
            Thread thread = new Thread(new Worker(), workerName + workersStarted++);
            thread.setDaemon(true);
            workers.add(thread);
            thread.start();
        }
    }

    /** Worker threads running now (tests). */
    int workerCount()
    {
        return liveWorkers.get();
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Extents.report(fdNumber, offset, length, sink);
    }

    /** Read-ahead through {@code posix_fadvise(WILLNEED)} on the second descriptor. */
    @Override
    public long cache(long offset, long length)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Posix.fadvise(fdNumber, offset, length, Posix.POSIX_FADV_WILLNEED);
    }

    @Override
    public long size()
    {
        if (closed) {
            return -Errno.EBADF;
        }
        return Posix.size(fdNumber);
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void close()
            throws IOException
    {
        List<Thread> running;
        synchronized (workers) {
            if (closed) {
                return;
            }
            closed = true;
            running = List.copyOf(workers);
        }
        boolean stuck = false;
        for (int i = 0; i < running.size() && !stuck; i++) {
            try {
                stuck = !queue.offer(STOP, CLOSE_TIMEOUT_SECONDS, TimeUnit.SECONDS);
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                stuck = true;
            }
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(CLOSE_TIMEOUT_SECONDS);
        for (Thread worker : running) {
            if (worker == Thread.currentThread()) {
                continue;
            }
            try {
                worker.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            stuck |= worker.isAlive();
        }
        if (stuck) {
            log.warn("{}: workers did not stop within {} seconds; interrupting them and cancelling queued operations", this, CLOSE_TIMEOUT_SECONDS);
            for (Thread worker : running) {
                worker.interrupt();
            }
        }
        Kiocb leftover;
        while ((leftover = queue.poll()) != null) {
            if (leftover != STOP) {
                complete(leftover, -Errno.ECANCELED);
            }
        }
        try (fd) {
            channel.close();
        }
    }

    @Override
    public String toString()
    {
        return "NioBackingFile{" + fd.path() + ", workers=" + liveWorkers.get() + "/" + maxWorkers + ", " + capabilities + "}";
    }

    private static void complete(Kiocb kiocb, long res)
    {
        try {
            kiocb.complete(res);
        }
        catch (RuntimeException | Error e) {
            log.error("completion of {} failed", kiocb, e);
        }
    }

    /** The errno an {@link IOException} from the channel stands for, as far as the JDK lets us tell. */
    static long errno(IOException e)
    {
        if (e instanceof ClosedChannelException) {
            return -Errno.EBADF;
        }
        String message = String.valueOf(e.getMessage());
        if (message.contains("No space left")) {
            return -Errno.ENOSPC;
        }
        if (message.contains("Invalid argument")) {
            return -Errno.EINVAL;
        }
        if (message.contains("File too large")) {
            return -Errno.EFBIG;
        }
        return -Errno.EIO;
    }

    private final class Worker
            implements Runnable
    {
        private final ChannelIo io = new ChannelIo();

        @Override
        public void run()
        {
            try {
                serve();
            }
            finally {
                synchronized (workers) {
                    workers.remove(Thread.currentThread());
                }
            }
        }

        private void serve()
        {
            while (true) {
                Kiocb kiocb;
                idleWorkers.incrementAndGet();
                try {
                    kiocb = queue.poll(keepAliveNanos, TimeUnit.NANOSECONDS);
                }
                catch (InterruptedException e) {
                    liveWorkers.decrementAndGet();
                    return;
                }
                finally {
                    idleWorkers.decrementAndGet();
                }
                if (kiocb == null) {
                    // Idle long enough: leave. A request queued meanwhile saw this worker idle and
                    // started none, so look once more after leaving the count, and stay for it.
                    liveWorkers.decrementAndGet();
                    if (queue.isEmpty() || !rejoin()) {
                        return;
                    }
                    continue;
                }
                if (kiocb == STOP) {
                    liveWorkers.decrementAndGet();
                    return;
                }
                long res;
                try {
                    res = execute(kiocb);
                }
                catch (RuntimeException | Error e) {
                    log.error("{} failed on {}", NioBackingFile.this, kiocb, e);
                    res = -Errno.EIO;
                }
                complete(kiocb, res);
            }
        }

        private boolean rejoin()
        {
            synchronized (workers) {
                if (closed || liveWorkers.get() >= maxWorkers) {
                    return false;
                }
                liveWorkers.incrementAndGet();
                return true;
            }
        }

        private long execute(Kiocb kiocb)
        {
            switch (kiocb.op()) {
                case READ:
                    return io.readIter(kiocb.iter(), kiocb.pos());
                case WRITE: {
                    long res = io.writeIter(kiocb.iter(), kiocb.pos());
                    if (res > 0 && (kiocb.flags() & Kiocb.IOCB_DSYNC) != 0) {
                        long sync = force(false);
                        return sync < 0 ? sync : res;
                    }
                    return res;
                }
                case FSYNC:
                    return force(!kiocb.datasync());
                case FALLOCATE:
                    return fallocate(kiocb.mode(), kiocb.pos(), kiocb.length());
                default:
                    throw new IllegalStateException("kiocb not prepared: " + kiocb);
            }
        }

        private long force(boolean metadata)
        {
            try {
                channel.force(metadata);
                return 0;
            }
            catch (IOException e) {
                return errno(e);
            }
        }

        private long fallocate(int mode, long offset, long length)
        {
            if (!direct || length <= 0 || offset < 0) {
                return Posix.fallocate(fdNumber, mode, offset, length);
            }
            int hold = blockLock.lock(offset / BounceIo.DIRECT_BLOCK_SIZE, (offset + length - 1) / BounceIo.DIRECT_BLOCK_SIZE, true);
            try {
                return Posix.fallocate(fdNumber, mode, offset, length);
            }
            finally {
                blockLock.unlock(hold);
            }
        }
    }

    private final class ChannelIo
            extends BounceIo
    {
        ChannelIo()
        {
            super(direct, BOUNCE_SIZE, blockLock, null);
        }

        @Override
        protected long read(ByteBuffer buffer, long address, long pos)
        {
            try {
                int n = channel.read(buffer, pos);
                return Math.max(n, 0);
            }
            catch (IOException e) {
                return errno(e);
            }
        }

        @Override
        protected long write(ByteBuffer buffer, long address, long pos)
        {
            long done = 0;
            try {
                while (buffer.hasRemaining()) {
                    done += channel.write(buffer, pos + done);
                }
                return done;
            }
            catch (IOException e) {
                return done > 0 ? done : errno(e);
            }
        }

        @Override
        protected long truncate(long size)
        {
            long current = Posix.size(fdNumber);
            long padded = (size + BounceIo.DIRECT_BLOCK_SIZE - 1) & -BounceIo.DIRECT_BLOCK_SIZE;
            if (current > padded) {
                // another write grew the file further: our padding is inside it and reads as zeros
                return 0;
            }
            return Posix.ftruncate(fdNumber, size);
        }
    }
}
