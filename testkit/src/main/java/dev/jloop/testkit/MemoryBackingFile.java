package dev.jloop.testkit;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} in memory, for frontend and device tests (nbdkit's {@code memory} plugin).
 * Sparse: the file is an array of {@value #BLOCK_SIZE}-byte blocks, and a block never written (or
 * punched whole) holds no memory, reads as zeros and is reported as {@code HOLE|ZERO} by
 * {@link #extents} (unless the capabilities declare no extents: then every range is data).
 *
 * <p>By default every operation completes synchronously in the calling thread. With
 * {@link Builder#queued(int)} operations run on the file's own threads and return
 * {@link Kiocb#QUEUED}, to exercise asynchronous completion; with {@link Builder#maxTransfer(int)}
 * reads and writes transfer at most that many bytes per call, to exercise short results.
 *
 * <p>Thread model {@link ThreadModel#PARALLEL}: operations on different blocks run concurrently; one
 * block is copied under a lock, so overlapping writes in flight together leave each byte with the
 * value of one of them. The size is fixed: writes past the end fail with {@code -ENOSPC}.
 */
public final class MemoryBackingFile
        implements BackingFile
{
    public static final int BLOCK_SIZE = 4096;
    private static final int LOCK_STRIPES = 64;

    private final long size;
    private final AtomicReferenceArray<byte[]> blocks;
    private final Object[] locks = new Object[LOCK_STRIPES];
    private final Capabilities capabilities;
    private final int maxTransfer;
    private final ExecutorService executor;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicInteger plugDepth = new AtomicInteger();

    /** A writable, synchronous file of {@code size} bytes, all zeros (one hole). */
    public MemoryBackingFile(long size)
    {
        this(builder(size));
    }

    private MemoryBackingFile(Builder builder)
    {
        if (builder.size < 0 || (builder.size + BLOCK_SIZE - 1) / BLOCK_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("size out of range: " + builder.size);
        }
        this.size = builder.size;
        this.blocks = new AtomicReferenceArray<>((int) ((size + BLOCK_SIZE - 1) / BLOCK_SIZE));
        for (int i = 0; i < LOCK_STRIPES; i++) {
            locks[i] = new Object();
        }
        this.capabilities = builder.capabilities;
        this.maxTransfer = builder.maxTransfer;
        if (builder.completionThreads > 0) {
            AtomicInteger threadId = new AtomicInteger();
            this.executor = Executors.newFixedThreadPool(builder.completionThreads, runnable -> {
                Thread thread = new Thread(runnable, "memory-backing-file-" + threadId.incrementAndGet());
                thread.setDaemon(true);
                return thread;
            });
        }
        else {
            this.executor = null;
        }
    }

    public static Builder builder(long size)
    {
        return new Builder(size);
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (executor == null) {
            return doRead(iter, pos);
        }
        return queue(kiocb, () -> doRead(iter, pos));
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (executor == null) {
            return doWrite(iter, pos);
        }
        return queue(kiocb, () -> doWrite(iter, pos));
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        if (closed.get()) {
            return -Errno.EBADF;
        }
        if (executor == null) {
            return 0;
        }
        return queue(kiocb, () -> 0);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        int mode = kiocb.mode();
        long offset = kiocb.pos();
        long length = kiocb.length();
        if (executor == null) {
            return doFallocate(mode, offset, length);
        }
        return queue(kiocb, () -> doFallocate(mode, offset, length));
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (closed.get()) {
            return -Errno.EBADF;
        }
        if (offset < 0 || length < 0) {
            return -Errno.EINVAL;
        }
        long end = Math.min(size, offset + length);
        if (!capabilities.extents()) {
            // Declared blind to holes: the contract's answer is all data.
            return BackingFile.super.extents(offset, Math.max(0, end - offset), sink);
        }
        long start = offset;
        while (start < end) {
            boolean hole = blocks.get(blockIndex(start)) == null;
            long next = Math.min(end, blockStart(start) + BLOCK_SIZE);
            while (next < end && (blocks.get(blockIndex(next)) == null) == hole) {
                next = Math.min(end, next + BLOCK_SIZE);
            }
            if (!sink.extent(start, next - start, hole ? ExtentSink.HOLE | ExtentSink.ZERO : ExtentSink.DATA)) {
                break;
            }
            start = next;
        }
        return 0;
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void plug()
    {
        plugDepth.incrementAndGet();
    }

    @Override
    public void unplug()
    {
        if (plugDepth.decrementAndGet() < 0) {
            plugDepth.incrementAndGet();
            throw new IllegalStateException("unplug without plug");
        }
    }

    /** Plugs currently held (summed over threads); for tests that check a device plugs and unplugs in pairs. */
    public int plugDepth()
    {
        return plugDepth.get();
    }

    /** Bytes of block memory in use: written blocks only, holes cost nothing. */
    public long allocatedBytes()
    {
        long n = 0;
        for (int i = 0; i < blocks.length(); i++) {
            if (blocks.get(i) != null) {
                n += BLOCK_SIZE;
            }
        }
        return n;
    }

    /** Copies {@code [offset, offset + dst.length)} out, bypassing kiocbs; for test assertions. */
    public void read(long offset, byte[] dst)
    {
        checkRange(offset, dst.length);
        for (int done = 0; done < dst.length; ) {
            long pos = offset + done;
            int index = blockIndex(pos);
            int inBlock = (int) (pos - blockStart(pos));
            int n = Math.min(dst.length - done, BLOCK_SIZE - inBlock);
            synchronized (lock(index)) {
                byte[] block = blocks.get(index);
                if (block == null) {
                    java.util.Arrays.fill(dst, done, done + n, (byte) 0);
                }
                else {
                    System.arraycopy(block, inBlock, dst, done, n);
                }
            }
            done += n;
        }
    }

    /** Copies {@code src} in at {@code offset}, bypassing kiocbs (and the read-only flag); for test setup. */
    public void write(long offset, byte[] src)
    {
        checkRange(offset, src.length);
        for (int done = 0; done < src.length; ) {
            long pos = offset + done;
            int index = blockIndex(pos);
            int inBlock = (int) (pos - blockStart(pos));
            int n = Math.min(src.length - done, BLOCK_SIZE - inBlock);
            synchronized (lock(index)) {
                System.arraycopy(src, done, allocate(index), inBlock, n);
            }
            done += n;
        }
    }

    /** Stops the completion threads. Every submitted operation must have completed (the contract of {@link BackingFile#close()}). */
    @Override
    public void close()
    {
        if (closed.compareAndSet(false, true) && executor != null) {
            executor.shutdown();
        }
    }

    public boolean isClosed()
    {
        return closed.get();
    }

    private long queue(Kiocb kiocb, java.util.function.LongSupplier operation)
    {
        requireNonNull(kiocb, "kiocb is null");
        try {
            executor.execute(() -> kiocb.complete(operation.getAsLong()));
        }
        catch (RejectedExecutionException e) {
            return -Errno.EBADF;
        }
        return Kiocb.QUEUED;
    }

    private long doRead(IovIter iter, long pos)
    {
        if (closed.get()) {
            return -Errno.EBADF;
        }
        if (pos < 0) {
            return -Errno.EINVAL;
        }
        if (pos >= size) {
            return 0;
        }
        long total = Math.min(Math.min(iter.count(), size - pos), maxTransfer);
        long done = 0;
        while (done < total) {
            long at = pos + done;
            int index = blockIndex(at);
            int inBlock = (int) (at - blockStart(at));
            int n = (int) Math.min(total - done, BLOCK_SIZE - inBlock);
            synchronized (lock(index)) {
                byte[] block = blocks.get(index);
                if (block == null) {
                    iter.zero(n);
                }
                else {
                    iter.copyToIter(block, inBlock, n);
                }
            }
            done += n;
        }
        return done;
    }

    private long doWrite(IovIter iter, long pos)
    {
        if (closed.get()) {
            return -Errno.EBADF;
        }
        if (capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        if (pos < 0) {
            return -Errno.EINVAL;
        }
        if (iter.count() == 0) {
            return 0;
        }
        if (pos >= size) {
            return -Errno.ENOSPC;
        }
        long total = Math.min(Math.min(iter.count(), size - pos), maxTransfer);
        long done = 0;
        while (done < total) {
            long at = pos + done;
            int index = blockIndex(at);
            int inBlock = (int) (at - blockStart(at));
            int n = (int) Math.min(total - done, BLOCK_SIZE - inBlock);
            synchronized (lock(index)) {
                iter.copyFromIter(allocate(index), inBlock, n);
            }
            done += n;
        }
        return done;
    }

    // Mode rules follow vfs_fallocate() in fs/open.c: punching requires KEEP_SIZE, and punch and zero exclude each other.
    private long doFallocate(int mode, long offset, long length)
    {
        if (closed.get()) {
            return -Errno.EBADF;
        }
        if (offset < 0 || length <= 0) {
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
        if ((punch && !capabilities.trim()) || (zero && !capabilities.zero())) {
            return -Errno.EOPNOTSUPP;
        }
        if (capabilities.readOnly()) {
            return -Errno.EPERM;
        }
        if (!keepSize && offset + length > size) {
            // The size of a memory file is fixed.
            return -Errno.EFBIG;
        }
        long end = Math.min(size, offset + length);
        for (long at = offset; at < end; ) {
            int index = blockIndex(at);
            int inBlock = (int) (at - blockStart(at));
            int n = (int) Math.min(end - at, BLOCK_SIZE - inBlock);
            synchronized (lock(index)) {
                if (punch || zero) {
                    byte[] block = blocks.get(index);
                    if (punch && n == BLOCK_SIZE) {
                        blocks.set(index, null);
                    }
                    else if (block != null) {
                        java.util.Arrays.fill(block, inBlock, inBlock + n, (byte) 0);
                    }
                    else if (zero) {
                        allocate(index);
                    }
                }
                else {
                    allocate(index);
                }
            }
            at += n;
        }
        return 0;
    }

    private void checkRange(long offset, int length)
    {
        if (offset < 0 || offset + length > size) {
            throw new IndexOutOfBoundsException("range [" + offset + ", " + (offset + length) + ") outside a file of " + size + " bytes");
        }
    }

    /** The block's memory, allocated on first use; call with the block's lock held. */
    private byte[] allocate(int index)
    {
        byte[] block = blocks.get(index);
        if (block == null) {
            block = new byte[BLOCK_SIZE];
            blocks.set(index, block);
        }
        return block;
    }

    private Object lock(int index)
    {
        return locks[index & (LOCK_STRIPES - 1)];
    }

    private static int blockIndex(long pos)
    {
        return (int) (pos / BLOCK_SIZE);
    }

    private static long blockStart(long pos)
    {
        return pos / BLOCK_SIZE * BLOCK_SIZE;
    }

    /** Options of a {@link MemoryBackingFile}. */
    public static final class Builder
    {
        private final long size;
        private Capabilities capabilities = Capabilities.builder()
                .flush(true)
                .nativeFua(true)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(1)
                .build();
        private int completionThreads;
        private int maxTransfer = Integer.MAX_VALUE;

        private Builder(long size)
        {
            this.size = size;
        }

        /** Refuses writes and fallocate with {@code -EPERM}. */
        public Builder readOnly(boolean readOnly)
        {
            capabilities = capabilities.toBuilder().readOnly(readOnly).build();
            return this;
        }

        /** Whether {@link MemoryBackingFile#extents} reports holes (the default) or, declaring no extents, all data. */
        public Builder extents(boolean extents)
        {
            capabilities = capabilities.toBuilder().extents(extents).build();
            return this;
        }

        /**
         * Declares these capabilities. Trim and zero also decide whether fallocate works
         * ({@code -EOPNOTSUPP} otherwise), readOnly whether writes do, extents whether holes are reported.
         */
        public Builder capabilities(Capabilities capabilities)
        {
            this.capabilities = requireNonNull(capabilities, "capabilities is null");
            return this;
        }

        /** Runs operations on {@code threads} threads of the file and completes them from there. */
        public Builder queued(int threads)
        {
            if (threads < 1) {
                throw new IllegalArgumentException("threads must be positive: " + threads);
            }
            this.completionThreads = threads;
            return this;
        }

        /** Reads and writes transfer at most {@code bytes} per call: short results, as the contract allows. */
        public Builder maxTransfer(int bytes)
        {
            if (bytes < 1) {
                throw new IllegalArgumentException("max transfer must be positive: " + bytes);
            }
            this.maxTransfer = bytes;
            return this;
        }

        public MemoryBackingFile build()
        {
            return new MemoryBackingFile(this);
        }
    }
}
