package dev.jloop.posix;

import dev.jloop.api.IovIter;
import jnr.ffi.provider.MemoryManager;

import java.nio.ByteBuffer;

/**
 * Moves an {@link IovIter} to or from a file position through a backend's two primitives (read and
 * write of a direct buffer range), so that every backend bounces the same way:
 * <ul>
 * <li>direct iterators whose position and segments suit the file go straight, segment by segment;</li>
 * <li>heap iterators, and under {@code O_DIRECT} anything not aligned to {@value #DIRECT_BLOCK_SIZE}
 *     bytes, go through an aligned bounce buffer;</li>
 * <li>an unaligned {@code O_DIRECT} write reads the partial first and last blocks, merges the data
 *     and writes whole blocks (read-modify-write).</li>
 * </ul>
 * Reads stop at end of file and return what was read (0 at or past it); both directions advance the
 * iterator by the bytes transferred and return that count, or {@code -errno} when nothing was.
 *
 * <p>Read-modify-write is only correct if no other write touches the same blocks meanwhile: every
 * {@code O_DIRECT} write holds its blocks exclusively in the file's {@link BlockRangeLock}, which a
 * backend with concurrent writers must give; a backend that runs one request at a time needs none.
 *
 * <p>Not thread-safe: one instance per thread, since the bounce buffer is its own.
 */
public abstract class BounceIo
{
    /** Logical block size under {@code O_DIRECT}: offsets, lengths and addresses must be multiples of it. */
    public static final int DIRECT_BLOCK_SIZE = 4096;

    private static final MemoryManager MEMORY = jnr.ffi.Runtime.getSystemRuntime().getMemoryManager();
    private static final byte[] ZEROS = new byte[DIRECT_BLOCK_SIZE];

    private final int blockSize;
    private final long mask;
    private final int bounceSize;
    private final BlockRangeLock blocks;
    private final Runnable beforeWait;
    private ByteBuffer bounce;
    private long bounceAddress;

    /**
     * For a backend that runs one request at a time: no other write can overlap.
     *
     * @param direct whether the file is open with {@code O_DIRECT}
     * @param bounceSize bytes of bounce buffer (a multiple of {@value #DIRECT_BLOCK_SIZE}); larger
     * requests are bounced in several rounds. Allocated at first use.
     */
    protected BounceIo(boolean direct, int bounceSize)
    {
        this(direct, bounceSize, null, null);
    }

    /**
     * For a backend with concurrent writers: under {@code O_DIRECT} every write holds its blocks
     * exclusively in {@code blocks}, shared by every writer of the file, and {@code beforeWait} (if
     * not {@code null}) runs before it waits for another's (see
     * {@link BlockRangeLock#lock(long, long, boolean, Runnable)}).
     */
    protected BounceIo(boolean direct, int bounceSize, BlockRangeLock blocks, Runnable beforeWait)
    {
        if (bounceSize < 2 * DIRECT_BLOCK_SIZE || bounceSize % DIRECT_BLOCK_SIZE != 0) {
            throw new IllegalArgumentException("bounce size must be a multiple of " + DIRECT_BLOCK_SIZE + " of at least two blocks: " + bounceSize);
        }
        this.blockSize = direct ? DIRECT_BLOCK_SIZE : 1;
        this.mask = blockSize - 1;
        this.bounceSize = bounceSize;
        this.blocks = blocks;
        this.beforeWait = beforeWait != null ? beforeWait : () -> {};
    }

    /**
     * Reads into {@code buffer}'s remaining bytes from {@code pos} with one call. {@code address} is
     * the native address of {@code buffer}'s position. Returns the bytes read (fewer only at end of
     * file; 0 there) or {@code -errno}.
     */
    protected abstract long read(ByteBuffer buffer, long address, long pos);

    /**
     * Writes all of {@code buffer}'s remaining bytes at {@code pos}. {@code address} is the native
     * address of {@code buffer}'s position. Returns the bytes written or {@code -errno}.
     */
    protected abstract long write(ByteBuffer buffer, long address, long pos);

    /**
     * Sets the file size to {@code size}, after an {@code O_DIRECT} write whose block padding went
     * past end of file (a file, unlike a block device, can grow). A backend with concurrent writers
     * should leave the size alone when another write has meanwhile grown the file past the padded
     * block; that check and the truncation are not atomic against a third write extending the file
     * at the same moment, which a fixed-size block device never does.
     */
    protected abstract long truncate(long size);

    /** Reads into {@code iter} from {@code pos}; returns bytes read or {@code -errno}. */
    public final long readIter(IovIter iter, long pos)
    {
        if (pos < 0) {
            return -dev.jloop.api.Errno.EINVAL;
        }
        if (iter.count() == 0) {
            return 0;
        }
        if (goesStraight(iter, pos)) {
            return transferStraight(iter, pos, false);
        }
        ByteBuffer buffer = bounce();
        long done = 0;
        while (iter.count() > 0) {
            long start = pos + done;
            long alignedStart = start & ~mask;
            int head = (int) (start - alignedStart);
            int length = (int) Math.min(iter.count(), bounceSize - head);
            int span = (int) (((start + length + mask) & ~mask) - alignedStart);
            buffer.clear().limit(span);
            long n = read(buffer, bounceAddress, alignedStart);
            if (n < 0) {
                return done > 0 ? done : n;
            }
            int copy = (int) Math.min(n - head, length);
            if (copy <= 0) {
                break;
            }
            buffer.clear().position(head).limit(head + copy);
            iter.copyToIter(buffer);
            done += copy;
            if (copy < length) {
                break;
            }
        }
        return done;
    }

    /** Reads or writes segment by segment, straight from/to the iterator's own memory; stops at a short transfer. */
    private long transferStraight(IovIter iter, long pos, boolean write)
    {
        long done = 0;
        while (iter.count() > 0) {
            int length = iter.segmentLength(0);
            ByteBuffer segment = iter.segmentBuffer(0);
            long address = iter.segmentAddress(0);
            long n = write ? write(segment, address, pos + done) : read(segment, address, pos + done);
            if (n < 0) {
                return done > 0 ? done : n;
            }
            iter.advance(n);
            done += n;
            if (n < length) {
                break;
            }
        }
        return done;
    }

    /** Writes {@code iter} at {@code pos}; returns bytes written or {@code -errno}. */
    public final long writeIter(IovIter iter, long pos)
    {
        return writeIter(iter, pos, false);
    }

    /**
     * As {@link #writeIter(IovIter, long)}; with {@code nowait}, {@code -EAGAIN} (and nothing written)
     * instead of waiting while another write holds any of its blocks.
     */
    public final long writeIter(IovIter iter, long pos, boolean nowait)
    {
        if (pos < 0) {
            return -dev.jloop.api.Errno.EINVAL;
        }
        long count = iter.count();
        if (count == 0) {
            return 0;
        }
        if (blockSize == 1 || blocks == null) {
            return doWrite(iter, pos);
        }
        long firstBlock = pos / blockSize;
        long lastBlock = (pos + count - 1) / blockSize;
        int hold = nowait ? blocks.tryLock(firstBlock, lastBlock, true) : blocks.lock(firstBlock, lastBlock, true, beforeWait);
        if (hold < 0) {
            return -dev.jloop.api.Errno.EAGAIN;
        }
        try {
            return doWrite(iter, pos);
        }
        finally {
            blocks.unlock(hold);
        }
    }

    private long doWrite(IovIter iter, long pos)
    {
        if (goesStraight(iter, pos)) {
            return transferStraight(iter, pos, true);
        }
        ByteBuffer buffer = bounce();
        long done = 0;
        while (iter.count() > 0) {
            long start = pos + done;
            long alignedStart = start & ~mask;
            int head = (int) (start - alignedStart);
            int length = (int) Math.min(iter.count(), bounceSize - head);
            long end = start + length;
            long alignedEnd = (end + mask) & ~mask;
            int span = (int) (alignedEnd - alignedStart);
            // Bytes of the last block that exist in the file; fewer than a block means the write's
            // padding reaches past end of file.
            long tailValid = blockSize;
            if (head != 0) {
                long r = readBlock(0, alignedStart);
                if (r < 0) {
                    return done > 0 ? done : r;
                }
                if (span == blockSize) {
                    tailValid = r;
                }
            }
            if (alignedEnd != end && (head == 0 || span > blockSize)) {
                long r = readBlock(span - blockSize, alignedEnd - blockSize);
                if (r < 0) {
                    return done > 0 ? done : r;
                }
                tailValid = r;
            }
            buffer.clear().position(head).limit(head + length);
            iter.copyFromIter(buffer);
            buffer.clear().limit(span);
            long n = write(buffer, bounceAddress, alignedStart);
            long written = n < 0 ? 0 : Math.max(0, Math.min(length, n - head));
            if (written < length) {
                iter.revert(length - written);
            }
            if (n < 0) {
                return done > 0 ? done : n;
            }
            done += written;
            if (alignedEnd != end && tailValid < blockSize && n == span) {
                long res = truncate(Math.max(end, alignedEnd - blockSize + tailValid));
                if (res < 0) {
                    return done > 0 ? done : res;
                }
            }
            if (written < length) {
                break;
            }
        }
        return done;
    }

    private boolean goesStraight(IovIter iter, long pos)
    {
        return iter.isDirect() && ((pos | iter.alignment()) & mask) == 0;
    }

    /** Reads the block at {@code pos} into the bounce buffer at {@code offset}, zeroing what lies past end of file. */
    private long readBlock(int offset, long pos)
    {
        ByteBuffer buffer = bounce;
        buffer.clear().position(offset).limit(offset + blockSize);
        long r = read(buffer, bounceAddress + offset, pos);
        if (r < 0) {
            return r;
        }
        if (r < blockSize) {
            buffer.put(offset + (int) r, ZEROS, 0, blockSize - (int) r);
        }
        return r;
    }

    private ByteBuffer bounce()
    {
        if (bounce == null) {
            ByteBuffer buffer = ByteBuffer.allocateDirect(bounceSize + DIRECT_BLOCK_SIZE).alignedSlice(DIRECT_BLOCK_SIZE);
            bounce = buffer.limit(bounceSize).slice();
            bounceAddress = MEMORY.newPointer(bounce).address();
        }
        return bounce;
    }
}
