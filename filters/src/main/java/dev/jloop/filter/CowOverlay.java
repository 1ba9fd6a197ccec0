package dev.jloop.filter;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.BitSet;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import static java.util.Objects.requireNonNull;

/**
 * The overlay of the {@code cow} filter: the blocks written through it, in a file of their own, and
 * the map that says where each block of the disk is read from.
 *
 * <p>Files. {@code OVERLAY} holds block {@code i} at offset {@code i * blockSize}, as the disk does,
 * and only the blocks written take space (it is sparse). {@code OVERLAY.map} is the block map: a
 * header of {@value #HEADER} bytes (the magic {@code JLOOPCOW}, the format version, the block size
 * and the disk size, big-endian) and one byte per block: 0 the block is read from below, 1 it is data
 * in the overlay, 2 it reads as zeros. A block in the overlay is always written whole: a write of part
 * of a block first copies the block from where it was read until then (below, the overlay, or
 * zeros).
 *
 * <p>Durability. The map on disk changes in {@link #flush()} only: the overlay is made durable
 * first ({@code fdatasync}), then the map entries that changed since the last flush are written and
 * made durable. So an entry on disk never points at overlay data that might not have reached it, and a
 * crash loses the writes after the last flush (their blocks read as they were) and nothing before
 * it. {@link #close()} flushes a kept overlay; a temporary one is unlinked as soon as it is made, so
 * that even a crash leaves nothing behind.
 *
 * <p>The map file is locked ({@code fcntl}) while the overlay is open, so that neither a second
 * jloop nor {@code jloop commit} uses an overlay that is being served.
 *
 * <p>Thread safety: every method may be called from any thread. The map is guarded by a
 * read-write lock; ordering writes of one block is the caller's business (the filter keeps a lock per
 * block while it changes one).
 */
public final class CowOverlay
        implements Closeable
{
    /** Block state: read from the file below. */
    static final byte BELOW = 0;
    /** Block state: data in the overlay. */
    static final byte DATA = 1;
    /** Block state: reads as zeros. */
    static final byte ZERO = 2;

    public static final String MAP_SUFFIX = ".map";
    static final int MIN_BLOCK_SIZE = 4096;
    static final int MAX_BLOCK_SIZE = 16 << 20;
    static final int HEADER = 32;

    private static final byte[] MAGIC = "JLOOPCOW".getBytes(StandardCharsets.US_ASCII);
    private static final int VERSION = 1;
    private static final int COPY_CHUNK = 1 << 20;

    /** How the overlay opens its files: {@link FileChannel#open}, or a test's stand-in that can lose unsynced writes. */
    @FunctionalInterface
    interface ChannelOpener
    {
        FileChannel open(Path path, OpenOption... options)
                throws IOException;
    }

    private final Path path;
    private final boolean temporary;
    private final FileChannel data;
    private final FileChannel map;
    private final int blockSize;
    private final long size;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    // guarded by lock
    private final byte[] states;
    /** Blocks whose state changed since the last flush. */
    private final BitSet dirty = new BitSet();
    /** Flushes one at a time: a flush returns only once the map entries it took are durable. */
    private final Object flushing = new Object();

    private CowOverlay(Path path, boolean temporary, FileChannel data, FileChannel map, int blockSize, long size, byte[] states)
    {
        this.path = path;
        this.temporary = temporary;
        this.data = data;
        this.map = map;
        this.blockSize = blockSize;
        this.size = size;
        this.states = states;
    }

    /**
     * The overlay kept in {@code path} (and {@code path.map}) for a disk of {@code size} bytes: the
     * existing one, which must be of that size, or a new one with blocks of {@code blockSize}. An
     * existing overlay keeps its block size; {@code blockSizeGiven} says that the user chose
     * {@code blockSize}, which must then be the overlay's.
     *
     * @throws IOException saying what is wrong: a map that is not one, another size, a lock held
     */
    static CowOverlay open(Path path, long size, int blockSize, boolean blockSizeGiven, ChannelOpener opener)
            throws IOException
    {
        checkBlockSize(blockSize);
        Path mapPath = mapPath(path);
        if (!Files.exists(mapPath)) {
            if (Files.exists(path) && Files.size(path) > 0) {
                throw new IOException(path + " exists but has no block map " + mapPath + ": it is no overlay of jloop's; remove it or choose another file");
            }
            create(path, mapPath, size, blockSize, opener);
        }
        return openExisting(path, size, blockSizeGiven ? blockSize : 0, opener);
    }

    /** A new overlay for a disk of {@code size} bytes in {@code directory}, deleted when closed (and unlinked already). */
    static CowOverlay temporary(Path directory, long size, int blockSize, ChannelOpener opener)
            throws IOException
    {
        checkBlockSize(blockSize);
        Path path = Files.createTempFile(directory, "jloop-cow-", ".overlay");
        Path mapPath = mapPath(path);
        try {
            create(path, mapPath, size, blockSize, opener);
            CowOverlay overlay = openExisting(path, size, blockSize, opener, true);
            // the open channels keep both files until close; a crash leaves nothing behind
            Files.delete(mapPath);
            Files.delete(path);
            return overlay;
        }
        catch (IOException | RuntimeException e) {
            Files.deleteIfExists(mapPath);
            Files.deleteIfExists(path);
            throw e;
        }
    }

    /**
     * Writes what the overlay in {@code overlayPath} holds into {@code base}, the file it was made
     * over (its data blocks, and zeros for its zeroed blocks), makes that durable and then removes
     * the overlay and its map, so that {@code base} alone is what the filter served. A commit cut off
     * by a crash leaves the overlay in place, and running it again finishes it.
     *
     * @return the number of blocks written into {@code base}
     * @throws IOException when there is no overlay, it is in use, or {@code base} has another size
     */
    public static long commit(Path overlayPath, Path base)
            throws IOException
    {
        requireNonNull(overlayPath, "overlayPath is null");
        requireNonNull(base, "base is null");
        if (!Files.exists(mapPath(overlayPath))) {
            throw new IOException("no overlay at " + overlayPath + " (its block map " + mapPath(overlayPath) + " does not exist)");
        }
        long blocks = 0;
        try (FileChannel out = FileChannel.open(base, StandardOpenOption.WRITE)) {
            long size = out.size();
            try (CowOverlay overlay = openExisting(overlayPath, size, 0, FileChannel::open, false)) {
                blocks = overlay.copyInto(out);
                out.force(false);
            }
        }
        Files.delete(mapPath(overlayPath));
        Files.deleteIfExists(overlayPath);
        return blocks;
    }

    static Path mapPath(Path path)
    {
        return path.resolveSibling(path.getFileName() + MAP_SUFFIX);
    }

    static void checkBlockSize(long blockSize)
    {
        if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || Long.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("a block size is a power of two from 4K to 16M, not " + blockSize);
        }
    }

    private static void create(Path path, Path mapPath, long size, int blockSize, ChannelOpener opener)
            throws IOException
    {
        long blocks = blocks(size, blockSize);
        if (blocks > Integer.MAX_VALUE - HEADER) {
            throw new IOException("a disk of " + size + " bytes has too many blocks of " + blockSize + " bytes for an overlay; choose larger blocks");
        }
        opener.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE).close();
        // the map appears whole or not at all: written beside it, then renamed
        Path partial = mapPath.resolveSibling(mapPath.getFileName() + ".new");
        try (FileChannel channel = opener.open(partial, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer header = ByteBuffer.allocate(HEADER);
            header.put(MAGIC).putInt(VERSION).putInt(blockSize).putLong(size).clear();
            writeFully(channel, header, 0);
            if (blocks > 0) {
                // every block starts below: the map's body is zeros, and sparse
                writeFully(channel, ByteBuffer.allocate(1), HEADER + blocks - 1);
            }
            channel.force(true);
        }
        Files.move(partial, mapPath, StandardCopyOption.ATOMIC_MOVE);
        syncDirectory(mapPath.toAbsolutePath().getParent());
    }

    private static CowOverlay openExisting(Path path, long size, int blockSize, ChannelOpener opener)
            throws IOException
    {
        return openExisting(path, size, blockSize, opener, false);
    }

    /** {@code blockSize} 0 takes the overlay's own. */
    private static CowOverlay openExisting(Path path, long size, int blockSize, ChannelOpener opener, boolean temporary)
            throws IOException
    {
        Path mapPath = mapPath(path);
        FileChannel map = opener.open(mapPath, StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel data = null;
        try {
            // held until the channel closes
            boolean locked;
            try {
                locked = map.tryLock() != null;
            }
            catch (OverlappingFileLockException e) {
                locked = false;
            }
            if (!locked) {
                throw new IOException(path + " is in use: another jloop has it open");
            }
            ByteBuffer header = ByteBuffer.allocate(HEADER);
            readFully(map, header, 0);
            header.flip();
            byte[] magic = new byte[MAGIC.length];
            if (header.remaining() == HEADER) {
                header.get(magic);
            }
            if (!Arrays.equals(magic, MAGIC)) {
                throw new IOException(mapPath + " is not the block map of a jloop overlay");
            }
            int version = header.getInt();
            int ownBlockSize = header.getInt();
            long ownSize = header.getLong();
            if (version != VERSION) {
                throw new IOException(mapPath + " is of format " + version + "; this jloop reads format " + VERSION);
            }
            try {
                checkBlockSize(ownBlockSize);
            }
            catch (IllegalArgumentException e) {
                throw new IOException(mapPath + " is damaged: " + e.getMessage());
            }
            if (blockSize != 0 && blockSize != ownBlockSize) {
                throw new IOException("the overlay " + path + " has blocks of " + ownBlockSize + " bytes, not " + blockSize
                        + "; leave out --cow-block-size to continue it");
            }
            if (ownSize != size) {
                throw new IOException("the overlay " + path + " was made for a disk of " + ownSize + " bytes, not " + size
                        + ": it belongs to another file, or that file was resized");
            }
            long blocks = blocks(size, ownBlockSize);
            if (map.size() != HEADER + blocks) {
                throw new IOException(mapPath + " is damaged: " + map.size() + " bytes where a map of " + blocks + " blocks has " + (HEADER + blocks));
            }
            byte[] states = new byte[(int) blocks];
            readFully(map, ByteBuffer.wrap(states), HEADER);
            for (int i = 0; i < states.length; i++) {
                if (states[i] != BELOW && states[i] != DATA && states[i] != ZERO) {
                    throw new IOException(mapPath + " is damaged: block " + i + " has state " + states[i]);
                }
            }
            data = opener.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
            return new CowOverlay(path, temporary, data, map, ownBlockSize, size, states);
        }
        catch (IOException | RuntimeException e) {
            closeAll(e, data, map);
            throw e;
        }
    }

    /** Where the overlay is (or was, for a temporary one). */
    Path path()
    {
        return path;
    }

    int blockSize()
    {
        return blockSize;
    }

    /** The size of the disk. */
    long size()
    {
        return size;
    }

    long blocks()
    {
        return states.length;
    }

    byte state(long block)
    {
        lock.readLock().lock();
        try {
            return states[(int) block];
        }
        finally {
            lock.readLock().unlock();
        }
    }

    /**
     * The state of {@code first} and how far it goes: the end (exclusive, at most {@code end}) of the
     * blocks from {@code first} on that are in the same state.
     */
    Run run(long first, long end)
    {
        lock.readLock().lock();
        try {
            byte state = states[(int) first];
            long next = first + 1;
            while (next < end && states[(int) next] == state) {
                next++;
            }
            return new Run(state, next);
        }
        finally {
            lock.readLock().unlock();
        }
    }

    /** Whether every block of {@code [first, end)} is read from below. */
    boolean allBelow(long first, long end)
    {
        Run run = run(first, end);
        return run.state() == BELOW && run.end() == end;
    }

    /** Blocks {@code [first, end)} in state {@code state}: the state of {@code first}. */
    record Run(byte state, long end) {}

    /** Sets the state of a block; durable at the next {@link #flush()}. */
    void setState(long block, byte state)
    {
        lock.writeLock().lock();
        try {
            if (states[(int) block] != state) {
                states[(int) block] = state;
                dirty.set((int) block);
            }
        }
        finally {
            lock.writeLock().unlock();
        }
    }

    /** Reads {@code dst.remaining()} bytes of the overlay at {@code position}; zeros past its end. */
    void read(ByteBuffer dst, long position)
            throws IOException
    {
        while (dst.hasRemaining()) {
            int n = data.read(dst, position);
            if (n < 0) {
                while (dst.hasRemaining()) {
                    dst.put((byte) 0);
                }
                return;
            }
            position += n;
        }
    }

    /** Writes all of {@code src} into the overlay at {@code position}. */
    void write(ByteBuffer src, long position)
            throws IOException
    {
        writeFully(data, src, position);
    }

    /**
     * Makes every write to the overlay that returned before this call durable, with the map entries
     * set before it: the overlay's data first, then the map (see the class comment for why).
     */
    void flush()
            throws IOException
    {
        synchronized (flushing) {
            BitSet taken;
            byte[] values;
            lock.writeLock().lock();
            try {
                taken = (BitSet) dirty.clone();
                dirty.clear();
                values = new byte[taken.cardinality()];
                int k = 0;
                for (int block = taken.nextSetBit(0); block >= 0; block = taken.nextSetBit(block + 1)) {
                    values[k++] = states[block];
                }
            }
            finally {
                lock.writeLock().unlock();
            }
            try {
                data.force(false);
                int k = 0;
                for (int first = taken.nextSetBit(0); first >= 0; ) {
                    int end = taken.nextClearBit(first);
                    writeFully(map, ByteBuffer.wrap(values, k, end - first), HEADER + (long) first);
                    k += end - first;
                    first = taken.nextSetBit(end);
                }
                map.force(false);
            }
            catch (IOException | RuntimeException e) {
                // written again by the next flush, with the states of then
                lock.writeLock().lock();
                try {
                    dirty.or(taken);
                }
                finally {
                    lock.writeLock().unlock();
                }
                throw e;
            }
        }
    }

    /** Flushes a kept overlay, then closes its files (and so releases the lock). */
    @Override
    public void close()
            throws IOException
    {
        IOException failure = null;
        if (!temporary && data.isOpen()) {
            try {
                flush();
            }
            catch (IOException e) {
                failure = e;
            }
        }
        try {
            closeAll(failure, data, map);
        }
        catch (IOException e) {
            failure = e;
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** Writes every block not read from below into {@code out}; returns how many. */
    private long copyInto(FileChannel out)
            throws IOException
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(Math.max(blockSize, COPY_CHUNK));
        long written = 0;
        for (long block = 0; block < states.length; ) {
            Run run = run(block, states.length);
            if (run.state() != BELOW) {
                long from = block * blockSize;
                long to = Math.min(size, run.end() * blockSize);
                for (long at = from; at < to; ) {
                    int n = (int) Math.min(buffer.capacity(), to - at);
                    buffer.clear().limit(n);
                    if (run.state() == DATA) {
                        read(buffer, at);
                    }
                    else {
                        while (buffer.hasRemaining()) {
                            buffer.put((byte) 0);
                        }
                    }
                    buffer.flip();
                    writeFully(out, buffer, at);
                    at += n;
                }
                written += run.end() - block;
            }
            block = run.end();
        }
        return written;
    }

    private static long blocks(long size, int blockSize)
    {
        return (size + blockSize - 1) / blockSize;
    }

    private static void readFully(FileChannel channel, ByteBuffer dst, long position)
            throws IOException
    {
        while (dst.hasRemaining()) {
            int n = channel.read(dst, position);
            if (n < 0) {
                return;
            }
            position += n;
        }
    }

    private static void writeFully(FileChannel channel, ByteBuffer src, long position)
            throws IOException
    {
        while (src.hasRemaining()) {
            position += channel.write(src, position);
        }
    }

    /** A new file's name is durable once its directory is synced (fsync(2), "NOTES"). */
    private static void syncDirectory(Path directory)
    {
        try (FileChannel channel = FileChannel.open(directory, StandardOpenOption.READ)) {
            channel.force(true);
        }
        catch (IOException e) {
            // not every platform syncs a directory; the file's own fsync is what is left
        }
    }

    private static void closeAll(Throwable failure, Closeable... closeables)
            throws IOException
    {
        IOException first = null;
        for (Closeable closeable : closeables) {
            if (closeable == null) {
                continue;
            }
            try {
                closeable.close();
            }
            catch (IOException e) {
                if (failure != null) {
                    failure.addSuppressed(e);
                }
                else if (first == null) {
                    first = e;
                }
                else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    @Override
    public String toString()
    {
        return "CowOverlay{" + path + (temporary ? " (temporary)" : "") + ", blocks of " + blockSize + ", disk of " + size + "}";
    }
}
