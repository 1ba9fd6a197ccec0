package dev.jloop.testkit;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.iter.IovecIter;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.LongSupplier;

import static java.util.Objects.requireNonNull;

/**
 * A {@link BackingFile} over any backing file that behaves like a disk with a volatile write cache,
 * for crash-consistency tests: {@link #powerCut(Random)} loses what such a disk may lose when the
 * power goes, and keeps what it must keep. A device or frontend that acknowledges durability it did
 * not ask for (a forgotten fdatasync, a FUA dropped on the way) then loses acknowledged data.
 *
 * <p>What is durable, as on a disk: a change (a completed write, or a completed fallocate that
 * punches or zeroes) sits in the cache from its completion until an {@link #fsync} that was
 * <em>started after</em> that completion has completed. A write with {@link Kiocb#IOCB_DSYNC} is
 * durable at its completion when this file declares native FUA ({@link Builder#nativeFua}); without
 * that declaration IOCB_DSYNC is ignored, since the SPI asks callers to set it only where declared.
 * Other capabilities are the wrapped file's.
 *
 * <p>What a power cut keeps: the file is cut into sectors ({@value #DEFAULT_SECTOR_SIZE} bytes by
 * default; a change is atomic within a sector, so a sector never holds half of one). Each sector with
 * changes since its last durable state independently ends up, chosen at random, with its newest
 * content, its durable content (with the durable FUA writes on top), or any intermediate version:
 * the durable content with the first k of its cached changes in completion order (plus the FUA ones).
 * So a write can be torn at sector boundaries, and a sector can fall back to a version that a later
 * write had already replaced in the cache, as a cache that writes back in any order does; this is
 * harsher than "newest or durable", and never keeps less than the durable content.
 *
 * <p>The cut turns the power off: operations in flight complete with {@code -EIO} (what they wrote
 * may or may not survive, like any cached change; an fsync in flight makes nothing durable), new
 * operations fail with {@code -EIO}, and when {@code powerCut} returns the wrapped file holds
 * exactly the surviving content, which is all durable. {@link #powerOn()} serves again.
 *
 * <p>Every operation passes through to the wrapped file at once (reads see the newest data), with a
 * kiocb of this file's own: a result returned at once is returned at once, {@link Kiocb#QUEUED} when
 * the wrapped file returns it, and the caller's kiocb is completed exactly once, from the wrapped
 * file's completion. The bookkeeping holds this object's monitor briefly, never while calling the
 * wrapped file or a completion, so a completion never waits for I/O or for a submitter.
 *
 * <p>The durable content of the whole file is kept in memory (all-zero sectors cost nothing), read
 * from the wrapped file when wrapping it and after each cut, with the cached changes per sector:
 * meant for small test files. Overlapping changes in flight together are recorded in completion
 * order; the wrapped file may have applied them in another, and a cut may then leave either, as the
 * block layer promises nothing for such requests. Changes beyond the size at wrapping are not
 * tracked. Each operation allocates: this is a test double, not a data path.
 *
 * <p>Two lies, for tests that must prove their checker catches a broken device:
 * {@link Builder#ignoreFua} and {@link Builder#ignoreFlush}.
 */
public final class VolatileCacheBackingFile
        implements BackingFile, KiocbCompletion
{
    public static final int DEFAULT_SECTOR_SIZE = 512;
    private static final int TRANSFER_CHUNK = 1 << 20;
    private static final long TIMEOUT_SECONDS = 60;

    private final BackingFile file;
    private final Capabilities capabilities;
    private final int sectorSize;
    private final long size;
    private final boolean ignoreFua;
    private final boolean ignoreFlush;

    // Guarded by this.
    /** The durable content of each sector; null for all zeros. */
    private final byte[][] durable;
    /** The cached changes of each sector that has some, in completion order; the first is never durable. */
    private final Map<Integer, List<Change>> cached = new HashMap<>();
    /** Changes completed so far: the sequence number of the latest one. */
    private long completions;
    private int inFlight;
    private boolean poweredOff;

    private VolatileCacheBackingFile(Builder builder)
    {
        this.file = builder.file;
        Capabilities inner = file.capabilities();
        this.capabilities = inner.toBuilder().nativeFua(builder.nativeFua == null ? inner.nativeFua() : builder.nativeFua).build();
        this.sectorSize = builder.sectorSize;
        this.size = file.size();
        this.ignoreFua = builder.ignoreFua;
        this.ignoreFlush = builder.ignoreFlush;
        long sectors = (size + sectorSize - 1) / sectorSize;
        if (sectors > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("file of " + size + " bytes too large for sectors of " + sectorSize);
        }
        this.durable = new byte[(int) sectors][];
    }

    public static Builder builder(BackingFile file)
    {
        return new Builder(file);
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        Request request = start(kiocb, Kiocb.Op.READ);
        if (request == null) {
            return -Errno.EIO;
        }
        Kiocb inner = new Kiocb(null).initRw(Kiocb.Op.READ, file, kiocb.iter(), kiocb.pos(), 0).initCallback(this, request);
        return submit(inner, request, () -> file.readIter(inner));
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        Request request = start(kiocb, Kiocb.Op.WRITE);
        if (request == null) {
            return -Errno.EIO;
        }
        IovIter iter = kiocb.iter();
        // The data as it goes to the file, for the record of this change; the iterator is ours until completion.
        request.data = new byte[(int) Math.min(iter.count(), Integer.MAX_VALUE)];
        iter.revert(iter.copyFromIter(request.data, 0, request.data.length));
        request.pos = kiocb.pos();
        request.fua = (kiocb.flags() & Kiocb.IOCB_DSYNC) != 0 && capabilities.nativeFua() && !ignoreFua;
        int flags = file.capabilities().nativeFua() ? kiocb.flags() : kiocb.flags() & ~Kiocb.IOCB_DSYNC;
        Kiocb inner = new Kiocb(null).initRw(Kiocb.Op.WRITE, file, iter, kiocb.pos(), flags).initCallback(this, request);
        return submit(inner, request, () -> file.writeIter(inner));
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        Request request = start(kiocb, Kiocb.Op.FSYNC);
        if (request == null) {
            return -Errno.EIO;
        }
        Kiocb inner = new Kiocb(null).initFsync(file, kiocb.datasync()).initCallback(this, request);
        return submit(inner, request, () -> file.fsync(inner));
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        Request request = start(kiocb, Kiocb.Op.FALLOCATE);
        if (request == null) {
            return -Errno.EIO;
        }
        int mode = kiocb.mode();
        request.pos = kiocb.pos();
        request.length = (mode & (Fallocate.PUNCH_HOLE | Fallocate.ZERO_RANGE)) != 0 ? kiocb.length() : 0;
        Kiocb inner = new Kiocb(null).initFallocate(file, mode, kiocb.pos(), kiocb.length()).initCallback(this, request);
        return submit(inner, request, () -> file.fallocate(inner));
    }

    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (!poweredOn()) {
            return -Errno.EIO;
        }
        return file.extents(offset, length, sink);
    }

    @Override
    public long cache(long offset, long length)
    {
        if (!poweredOn()) {
            return -Errno.EIO;
        }
        return file.cache(offset, length);
    }

    @Override
    public long size()
    {
        return file.size();
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void registerMemory(List<ByteBuffer> regions)
    {
        file.registerMemory(regions);
    }

    @Override
    public void plug()
    {
        file.plug();
    }

    @Override
    public void unplug()
    {
        file.unplug();
    }

    @Override
    public void close()
            throws IOException
    {
        file.close();
    }

    /**
     * Cuts the power: operations in flight complete with {@code -EIO} (this waits for them), later
     * ones fail with {@code -EIO} until {@link #powerOn()}, and each sector with cached changes keeps
     * a version chosen with {@code random} (see the class comment). When this returns, the wrapped
     * file holds the surviving content and everything is durable. Call it from a thread that may
     * wait, never from a completion.
     *
     * @return the number of sectors that lost their newest content
     */
    public int powerCut(Random random)
            throws IOException
    {
        requireNonNull(random, "random is null");
        Map<Integer, byte[]> survivors = new TreeMap<>();
        synchronized (this) {
            if (poweredOff) {
                throw new IllegalStateException("the power is already off");
            }
            poweredOff = true;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_SECONDS);
            try {
                while (inFlight > 0) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        throw new IOException(inFlight + " operations of the wrapped file still in flight after " + TIMEOUT_SECONDS + " s");
                    }
                    TimeUnit.NANOSECONDS.timedWait(this, left);
                }
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while waiting for operations in flight");
            }
            for (Map.Entry<Integer, List<Change>> entry : cached.entrySet()) {
                byte[] survivor = survivor(entry.getKey(), entry.getValue(), random);
                if (survivor != null) {
                    survivors.put(entry.getKey(), survivor);
                }
            }
            cached.clear();
        }
        // The power is off: nothing but this thread touches the wrapped file now.
        writeSurvivors(survivors);
        load();
        return survivors.size();
    }

    /** Serves again after {@link #powerCut}, as a disk does when the power comes back. */
    public synchronized void powerOn()
    {
        if (!poweredOff) {
            throw new IllegalStateException("the power is on");
        }
        poweredOff = false;
    }

    public synchronized boolean poweredOn()
    {
        return !poweredOff;
    }

    /** Sectors with changes that a power cut could lose now. */
    public synchronized int cachedSectors()
    {
        return cached.size();
    }

    private synchronized Request start(Kiocb kiocb, Kiocb.Op op)
    {
        if (poweredOff) {
            return null;
        }
        inFlight++;
        Request request = new Request(requireNonNull(kiocb, "kiocb is null"), op);
        // An fsync covers the changes completed before it starts, and no others.
        request.covers = completions;
        return request;
    }

    private long submit(Kiocb inner, Request request, LongSupplier operation)
    {
        inner.markSubmitted();
        long res;
        try {
            res = operation.getAsLong();
        }
        catch (RuntimeException | Error e) {
            finish(request, -Errno.EIO);
            throw e;
        }
        if (res == Kiocb.QUEUED) {
            return Kiocb.QUEUED;
        }
        return finish(request, res);
    }

    /** The wrapped file's completion of a queued operation. */
    @Override
    public void complete(Kiocb inner, long res)
    {
        Request request = (Request) inner.privateData();
        request.kiocb.complete(finish(request, res));
    }

    /** Records what the operation changed or made durable; returns the caller's result. */
    private synchronized long finish(Request request, long res)
    {
        boolean on = !poweredOff;
        switch (request.op) {
            case WRITE:
                if (res > 0) {
                    record(request.pos, request.data, res, request.fua && on);
                }
                break;
            case FALLOCATE:
                if (res == 0 && request.length > 0) {
                    record(request.pos, null, request.length, false);
                }
                break;
            case FSYNC:
                if (res == 0 && on && !ignoreFlush) {
                    for (Iterator<Map.Entry<Integer, List<Change>>> i = cached.entrySet().iterator(); i.hasNext(); ) {
                        Map.Entry<Integer, List<Change>> entry = i.next();
                        if (fold(entry.getKey(), entry.getValue(), request.covers)) {
                            i.remove();
                        }
                    }
                }
                break;
            case READ:
            default:
                break;
        }
        if (--inFlight == 0) {
            notifyAll();
        }
        return on ? res : -Errno.EIO;
    }

    /** One change of {@code [pos, pos + length)}: {@code data} from its start, or zeros when null. */
    private void record(long pos, byte[] data, long length, boolean fua)
    {
        long seq = ++completions;
        long end = Math.min(size, pos + length);
        for (long at = Math.max(0, pos); at < end; ) {
            int sector = (int) (at / sectorSize);
            long sectorStart = (long) sector * sectorSize;
            int from = (int) (at - sectorStart);
            int to = (int) Math.min(sectorLength(sector), end - sectorStart);
            Change change = new Change(seq, from, to, data, data == null ? 0 : (int) (at - pos), fua);
            List<Change> changes = cached.computeIfAbsent(sector, key -> new ArrayList<>());
            changes.add(change);
            if (fold(sector, changes, -1)) {
                cached.remove(sector);
            }
            at = sectorStart + to;
        }
    }

    /**
     * Moves the leading changes that are durable (FUA, or completed at or before {@code covers}) into
     * the sector's durable content. Returns whether none is left.
     */
    private boolean fold(int sector, List<Change> changes, long covers)
    {
        int n = 0;
        while (n < changes.size() && (changes.get(n).fua || changes.get(n).seq <= covers)) {
            durable[sector] = changes.get(n).applyTo(durable[sector], sectorLength(sector));
            n++;
        }
        changes.subList(0, n).clear();
        return changes.isEmpty();
    }

    /** The content the sector keeps through the cut, or null when it keeps its newest, which the file has. */
    private byte[] survivor(int sector, List<Change> changes, Random random)
    {
        int volatileChanges = (int) changes.stream().filter(change -> !change.fua).count();
        int kept;
        switch (random.nextInt(3)) {
            case 0:
                kept = volatileChanges;
                break;
            case 1:
                kept = 0;
                break;
            default:
                kept = random.nextInt(volatileChanges + 1);
                break;
        }
        if (kept == volatileChanges) {
            return null;
        }
        byte[] content = durable[sector] == null ? new byte[sectorLength(sector)] : durable[sector].clone();
        int seen = 0;
        for (Change change : changes) {
            if (change.fua || seen++ < kept) {
                content = change.applyTo(content, content.length);
            }
        }
        return content;
    }

    private void writeSurvivors(Map<Integer, byte[]> survivors)
            throws IOException
    {
        // Runs of adjacent sectors go as one write.
        Iterator<Map.Entry<Integer, byte[]>> entries = survivors.entrySet().iterator();
        Map.Entry<Integer, byte[]> next = entries.hasNext() ? entries.next() : null;
        while (next != null) {
            int first = next.getKey();
            List<byte[]> run = new ArrayList<>();
            int last = first - 1;
            while (next != null && next.getKey() == last + 1) {
                run.add(next.getValue());
                last = next.getKey();
                next = entries.hasNext() ? entries.next() : null;
            }
            transfer(Kiocb.Op.WRITE, IovecIter.of(IovIter.Direction.SOURCE, run.toArray(new byte[0][])), (long) first * sectorSize);
        }
    }

    /** Reads the wrapped file's content as the durable content of every sector. */
    private void load()
            throws IOException
    {
        byte[][] content = new byte[durable.length][];
        for (long offset = 0; offset < size; offset += TRANSFER_CHUNK) {
            byte[] chunk = new byte[(int) Math.min(TRANSFER_CHUNK, size - offset)];
            transfer(Kiocb.Op.READ, IovecIter.of(IovIter.Direction.DEST, chunk), offset);
            for (int at = 0; at < chunk.length; at += sectorSize) {
                int sector = (int) ((offset + at) / sectorSize);
                byte[] data = Arrays.copyOfRange(chunk, at, Math.min(chunk.length, at + sectorSize));
                content[sector] = isZero(data) ? null : data;
            }
        }
        synchronized (this) {
            System.arraycopy(content, 0, durable, 0, durable.length);
        }
    }

    /** Reads or writes all of {@code iter} at {@code pos} on the wrapped file, waiting; reads past its end give zeros. */
    private void transfer(Kiocb.Op op, IovIter iter, long pos)
            throws IOException
    {
        long done = 0;
        while (iter.count() > 0) {
            CompletableFuture<Long> result = new CompletableFuture<>();
            long at = pos + done;
            Kiocb kiocb = new Kiocb(null).initRw(op, file, iter, at, 0).initCallback((k, res) -> result.complete(res), null);
            kiocb.markSubmitted();
            long res = op == Kiocb.Op.READ ? file.readIter(kiocb) : file.writeIter(kiocb);
            if (res == Kiocb.QUEUED) {
                try {
                    res = result.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
                }
                catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InterruptedIOException("interrupted during " + op + " at " + at);
                }
                catch (ExecutionException | TimeoutException e) {
                    throw new IOException(op + " at " + at + " of the wrapped file did not complete", e);
                }
            }
            if (res < 0) {
                throw new IOException(op + " at " + at + " of the wrapped file failed: " + Errno.name(res));
            }
            if (res == 0) {
                if (op == Kiocb.Op.WRITE) {
                    throw new IOException("WRITE at " + at + " of the wrapped file made no progress");
                }
                iter.zero(iter.count());
                return;
            }
            done += res;
        }
    }

    private int sectorLength(int sector)
    {
        return (int) Math.min(sectorSize, size - (long) sector * sectorSize);
    }

    private static boolean isZero(byte[] data)
    {
        for (byte b : data) {
            if (b != 0) {
                return false;
            }
        }
        return true;
    }

    /** One operation on its way through: the caller's kiocb and what its completion must record. */
    private static final class Request
    {
        final Kiocb kiocb;
        final Kiocb.Op op;
        long pos;
        long length;
        byte[] data;
        boolean fua;
        long covers;

        Request(Kiocb kiocb, Kiocb.Op op)
        {
            this.kiocb = kiocb;
            this.op = op;
        }
    }

    /** What one write or zeroing did to one sector: bytes {@code [from, to)} of it. */
    private static final class Change
    {
        final long seq;
        final int from;
        final int to;
        /** Null for zeros. */
        final byte[] data;
        final int dataOffset;
        final boolean fua;

        Change(long seq, int from, int to, byte[] data, int dataOffset, boolean fua)
        {
            this.seq = seq;
            this.from = from;
            this.to = to;
            this.data = data;
            this.dataOffset = dataOffset;
            this.fua = fua;
        }

        /** Returns {@code content} (null for all zeros) with this change applied, allocating when needed. */
        byte[] applyTo(byte[] content, int sectorLength)
        {
            if (data == null) {
                if (content != null) {
                    Arrays.fill(content, from, to, (byte) 0);
                }
                return content;
            }
            byte[] result = content == null ? new byte[sectorLength] : content;
            System.arraycopy(data, dataOffset, result, from, to - from);
            return result;
        }
    }

    /** Options of a {@link VolatileCacheBackingFile}. */
    public static final class Builder
    {
        private final BackingFile file;
        private int sectorSize = DEFAULT_SECTOR_SIZE;
        private Boolean nativeFua;
        private boolean ignoreFua;
        private boolean ignoreFlush;

        private Builder(BackingFile file)
        {
            this.file = requireNonNull(file, "file is null");
        }

        /** The unit a cut keeps or loses independently, a power of two (512 by default; 4096 as an Advanced Format disk). */
        public Builder sectorSize(int sectorSize)
        {
            if (sectorSize < 1 || Integer.bitCount(sectorSize) != 1) {
                throw new IllegalArgumentException("sector size must be a power of two: " + sectorSize);
            }
            this.sectorSize = sectorSize;
            return this;
        }

        /**
         * Declares native FUA (a write with IOCB_DSYNC is durable at completion) or not (the device
         * must write and then fsync); by default as the wrapped file declares.
         */
        public Builder nativeFua(boolean nativeFua)
        {
            this.nativeFua = nativeFua;
            return this;
        }

        /** A lie: IOCB_DSYNC writes stay in the cache like any other, though native FUA is declared. */
        public Builder ignoreFua(boolean ignoreFua)
        {
            this.ignoreFua = ignoreFua;
            return this;
        }

        /** A lie: fsync succeeds and makes nothing durable. */
        public Builder ignoreFlush(boolean ignoreFlush)
        {
            this.ignoreFlush = ignoreFlush;
            return this;
        }

        /** Wraps the file, reading its content as the durable content. */
        public VolatileCacheBackingFile build()
                throws IOException
        {
            VolatileCacheBackingFile volatileCache = new VolatileCacheBackingFile(this);
            volatileCache.load();
            return volatileCache;
        }
    }
}
