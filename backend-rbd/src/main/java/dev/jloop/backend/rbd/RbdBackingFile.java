package dev.jloop.backend.rbd;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.DirectMemory;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.byref.PointerByReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * An RBD image as a {@link BackingFile}, through librbd's asynchronous C API: reads and writes are
 * {@code rbd_aio_readv}/{@code rbd_aio_writev} over the request's own pages (a BVEC or KVEC iterator's
 * segments become the iovec, nothing is copied), flush is {@code rbd_aio_flush}, a punched hole
 * {@code rbd_aio_discard} (or {@code rbd_aio_write_zeroes} where the range is not 4 KiB aligned),
 * zeroing {@code rbd_aio_write_zeroes}, extents {@code rbd_diff_iterate2}. One image handle serves
 * every connection of an export: librbd is thread-safe and orders nothing itself, as a disk.
 *
 * <p>Every operation returns {@link Kiocb#QUEUED}; librbd calls back on one of its own threads, where
 * the kiocb is completed. That callback takes the return value, releases the completion, gives the
 * slot back and calls {@link Kiocb#complete}: no lock is held across it, and nothing in it waits
 * (the completion rule of {@link BackingFile}). FUA is not native: the loop device follows a FUA
 * write with a flush from its work queue, never from this callback.
 *
 * <p>In flight is bounded by a fixed array of slots (the queue depth), each with a preallocated iovec
 * array of {@value #IOV_PER_SLOT} entries (a longer vector is a short transfer, which the loop device
 * resubmits) and, only for heap (IOVEC) iterators, a bounce buffer of its own allocated on first use.
 *
 * <p>The image does not grow: a read at or past its end reads nothing, one across it is short; a write
 * there fails with {@code -ENOSPC}, or is short.
 */
final class RbdBackingFile
        implements BackingFile
{
    static final int DISCARD_GRANULARITY = 4096;
    static final int IOV_PER_SLOT = 256;
    private static final int BOUNCE_SIZE = 1 << 20;
    private static final int IOVEC_SIZE = 16;

    private static final Logger log = LoggerFactory.getLogger(RbdBackingFile.class);

    private static final int OP_READ = 0;
    private static final int OP_WRITE = 1;
    private static final int OP_OTHER = 2;

    private final LibRbd lib;
    private final Rados rados;
    private final ImageName name;
    private final long image;
    private final Pointer imagePointer;
    private final boolean readOnly;
    private final long size;
    private final Capabilities capabilities;
    private final Slot[] slots;
    private final FreeSlots free;
    private final Pointer slotMemory;
    /** The native address of {@link #callback}; the pointer keeps the closure alive. */
    private final Pointer callbackPointer;
    private final LibRbd.AioCallback callback = this::aioComplete;
    /** One closure for every {@code rbd_diff_iterate2}: jnr makes a native trampoline per callback object. */
    private final LibRbd.DiffCallback diffCallback = this::diffExtent;
    private final Object extentsLock = new Object();
    /** What the running {@code rbd_diff_iterate2} reported: offset, length, exists. Under {@link #extentsLock}. */
    private final List<long[]> diffExtents = new ArrayList<>();
    private volatile boolean closed;

    private RbdBackingFile(LibRbd lib, Rados rados, ImageName name, long image, boolean readOnly, int queueDepth)
            throws IOException
    {
        this.lib = requireNonNull(lib, "lib is null");
        this.rados = requireNonNull(rados, "rados is null");
        this.name = requireNonNull(name, "name is null");
        this.image = image;
        Runtime runtime = Runtime.getRuntime(lib);
        this.imagePointer = Pointer.wrap(runtime, image);
        this.readOnly = readOnly;
        PointerByReference sizeOut = new PointerByReference();
        Rados.check("rbd_get_size(" + name + ")", lib.rbd_get_size(image, sizeOut));
        this.size = Rados.value(sizeOut);
        this.capabilities = Capabilities.builder()
                .readOnly(readOnly)
                .flush(true)
                // FUA is a write and then rbd_aio_flush, which the loop device queues after the write
                .nativeFua(false)
                .trim(true)
                .zero(true)
                .extents(true)
                .multiConn(true)
                .cache(false)
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(1)
                .queueDepth(queueDepth)
                .build();
        this.callbackPointer = runtime.getClosureManager().getClosurePointer(LibRbd.AioCallback.class, callback);
        // per slot: its iovec array, then the rbd_completion_t that rbd_aio_create_completion fills in
        long slotBytes = (long) IOVEC_SIZE * IOV_PER_SLOT + 8;
        this.slotMemory = Memory.allocateDirect(runtime, slotBytes * queueDepth, true);
        this.slots = new Slot[queueDepth];
        for (int i = 0; i < queueDepth; i++) {
            slots[i] = new Slot(i, slotMemory.address() + slotBytes * i);
        }
        this.free = new FreeSlots(queueDepth);
    }

    /**
     * Opens {@code name} on {@code rados}, read-only for a snapshot or when asked; on success the file
     * owns {@code rados} and closes it.
     */
    static RbdBackingFile open(LibRbd lib, Rados rados, ImageName name, boolean readOnly, int queueDepth)
            throws IOException
    {
        boolean ro = readOnly || name.snapshot() != null;
        PointerByReference handle = new PointerByReference();
        int res = ro
                ? lib.rbd_open_read_only(rados.ioctx(), name.image(), handle, name.snapshot())
                : lib.rbd_open(rados.ioctx(), name.image(), handle, null);
        if (res == -Errno.ENOENT) {
            throw new IOException(name + ": no such image" + (name.snapshot() != null ? " or snapshot" : "")
                    + (ro ? "" : " (add --size SIZE to create it)"));
        }
        Rados.check((ro ? "rbd_open_read_only(" : "rbd_open(") + name + ")", res);
        long image = Rados.value(handle);
        try {
            return new RbdBackingFile(lib, rados, name, image, ro, queueDepth);
        }
        catch (IOException | RuntimeException e) {
            lib.rbd_close(image);
            throw e;
        }
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (closed) {
            return -Errno.EBADF;
        }
        if (iter.count() == 0 || pos >= size) {
            return 0;
        }
        long want = Math.min(iter.count(), size - pos);
        Slot slot = take(kiocb, OP_READ);
        int iovcnt = slot.fillIovec(iter, want, false);
        int res = lib.rbd_aio_readv(image, slot.iovecs, iovcnt, pos, slot.prepare());
        return submitted(slot, res);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (readOnly) {
            return -Errno.EPERM;
        }
        if (closed) {
            return -Errno.EBADF;
        }
        if (iter.count() == 0) {
            return 0;
        }
        if (pos >= size) {
            return -Errno.ENOSPC;
        }
        long want = Math.min(iter.count(), size - pos);
        Slot slot = take(kiocb, OP_WRITE);
        int iovcnt = slot.fillIovec(iter, want, true);
        int res = lib.rbd_aio_writev(image, slot.iovecs, iovcnt, pos, slot.prepare());
        return submitted(slot, res);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        Slot slot = take(kiocb, OP_OTHER);
        return submitted(slot, lib.rbd_aio_flush(image, slot.prepare()));
    }

    /**
     * A punched hole is {@code rbd_aio_discard} when it is 4 KiB aligned: the connection is set up with
     * {@code rbd_discard_granularity_bytes=4096} and {@code rbd_skip_partial_discard=false}, so such a
     * discard frees whole objects and zeroes the rest, and reads back as zeros, as a hole must. An
     * unaligned one would be rounded inwards and leave its edges, so it is {@code rbd_aio_write_zeroes},
     * which is librbd's exact discard. {@link Fallocate#ZERO_RANGE} keeps the range allocated, as
     * {@code fallocate(2)} does: a thick-provisioned {@code rbd_aio_write_zeroes}.
     */
    @Override
    public long fallocate(Kiocb kiocb)
    {
        if (readOnly) {
            return -Errno.EPERM;
        }
        if (closed) {
            return -Errno.EBADF;
        }
        int mode = kiocb.mode();
        long offset = kiocb.pos();
        long length = Math.min(kiocb.length(), size - offset);
        boolean punch = (mode & Fallocate.PUNCH_HOLE) != 0;
        boolean zero = (mode & Fallocate.ZERO_RANGE) != 0;
        if ((!punch && !zero) || (punch && zero) || (punch && (mode & Fallocate.KEEP_SIZE) == 0)) {
            return -Errno.EOPNOTSUPP;
        }
        if (offset < 0 || kiocb.length() < 0) {
            return -Errno.EINVAL;
        }
        if (length <= 0) {
            return 0;
        }
        Slot slot = take(kiocb, OP_OTHER);
        int res;
        if (punch && offset % DISCARD_GRANULARITY == 0 && length % DISCARD_GRANULARITY == 0) {
            res = lib.rbd_aio_discard(image, offset, length, slot.prepare());
        }
        else {
            res = lib.rbd_aio_write_zeroes(imagePointer, offset, length, slot.prepare(), punch ? 0 : LibRbd.WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
        }
        return submitted(slot, res);
    }

    /**
     * {@code rbd_diff_iterate2} from the image's creation (no snapshot to compare with), exact to the
     * byte ({@code whole_object=0}), parents included: what it reports is data, the rest holes. It calls
     * back in this thread; concurrent calls take turns.
     */
    @Override
    public long extents(long offset, long length, ExtentSink sink)
    {
        if (closed) {
            return -Errno.EBADF;
        }
        if (length <= 0) {
            return 0;
        }
        long end = Math.min(offset + length, size);
        if (offset >= end) {
            sink.extent(offset, length, ExtentSink.HOLE | ExtentSink.ZERO);
            return 0;
        }
        List<long[]> data;
        synchronized (extentsLock) {
            diffExtents.clear();
            int res = lib.rbd_diff_iterate2(image, null, offset, end - offset, (byte) 1, (byte) 0, diffCallback, 0);
            data = new ArrayList<>(diffExtents);
            diffExtents.clear();
            if (res < 0) {
                return res;
            }
        }
        data.sort((a, b) -> Long.compare(a[0], b[0]));
        long at = offset;
        for (long[] extent : data) {
            long from = Math.max(extent[0], at);
            long to = Math.min(extent[0] + extent[1], end);
            if (to <= from) {
                continue;
            }
            if (from > at && !sink.extent(at, from - at, ExtentSink.HOLE | ExtentSink.ZERO)) {
                return 0;
            }
            if (!sink.extent(from, to - from, extent[2] != 0 ? ExtentSink.DATA : ExtentSink.HOLE | ExtentSink.ZERO)) {
                return 0;
            }
            at = to;
        }
        if (at < offset + length) {
            sink.extent(at, offset + length - at, ExtentSink.HOLE | ExtentSink.ZERO);
        }
        return 0;
    }

    /** {@code rbd_diff_iterate2}'s callback, while that call runs under {@link #extentsLock}. */
    private int diffExtent(long offset, long length, int exists, long arg)
    {
        diffExtents.add(new long[] {offset, length, exists});
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
    public void close()
            throws IOException
    {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        // every operation has completed (BackingFile#close); what librbd still caches is written back
        try (rados) {
            int flush = readOnly ? 0 : lib.rbd_flush(image);
            int res = lib.rbd_close(image);
            Rados.check("rbd_flush(" + name + ")", flush);
            Rados.check("rbd_close(" + name + ")", res);
        }
    }

    @Override
    public String toString()
    {
        return "RbdBackingFile{" + name + ", " + capabilities + "}";
    }

    /**
     * A free slot for {@code kiocb}. The loop device keeps no more than the queue depth in flight, so
     * one is free; a caller that does not (a test) waits for a completion ({@link FreeSlots#take}).
     */
    private Slot take(Kiocb kiocb, int op)
    {
        int index = free.poll();
        Slot slot = slots[index >= 0 ? index : free.take()];
        slot.kiocb = kiocb;
        slot.op = op;
        return slot;
    }

    /** What a submission returns: {@link Kiocb#QUEUED}, or the error librbd refused it with. */
    private long submitted(Slot slot, int res)
    {
        if (res >= 0) {
            return Kiocb.QUEUED;
        }
        // refused: the callback will never run
        lib.rbd_aio_release(slot.completion());
        slot.kiocb = null;
        free.push(slot.index);
        return res;
    }

    /** librbd's callback, on one of its threads: nothing here waits. */
    private void aioComplete(long completion, long arg)
    {
        Slot slot = slots[(int) arg];
        Kiocb kiocb = slot.kiocb;
        long res;
        try {
            long ret = lib.rbd_aio_get_return_value(completion);
            lib.rbd_aio_release(completion);
            res = slot.finish(kiocb, ret);
        }
        catch (RuntimeException | Error e) {
            log.error("{}: completion of {} failed", this, kiocb, e);
            res = -Errno.EIO;
        }
        slot.kiocb = null;
        free.push(slot.index);
        try {
            kiocb.complete(res);
        }
        catch (RuntimeException | Error e) {
            // an exception must not unwind into librbd's thread
            log.error("{}: completion callback of {} failed", this, kiocb, e);
        }
    }

    /** One operation in flight: its kiocb, its iovec array and its completion handle. */
    private final class Slot
    {
        private final int index;
        private final long iovecs;
        private final long completionOut;
        private final Pointer memory;
        private Kiocb kiocb;
        private int op;
        /** Bytes the submitted iovec holds. */
        private long submittedBytes;
        /** Heap iterators only: a direct copy of the data, or the buffer a read lands in. */
        private ByteBuffer bounce;
        private boolean bounced;

        Slot(int index, long address)
        {
            this.index = index;
            this.iovecs = address;
            this.completionOut = address + (long) IOVEC_SIZE * IOV_PER_SLOT;
            this.memory = slotMemory;
        }

        /** Creates the completion that calls back with this slot's index; returns it. */
        long prepare()
        {
            int res = lib.rbd_aio_create_completion(index, callbackPointer.address(), completionOut);
            if (res < 0) {
                throw new IllegalStateException("rbd_aio_create_completion failed: " + Rados.describe(res));
            }
            return completion();
        }

        long completion()
        {
            return memory.getLong(completionOut - slotMemory.address());
        }

        /**
         * Points the iovec array at the first {@code want} bytes of {@code iter}: its own segments when
         * they have native addresses, else this slot's bounce buffer (filled from the iterator for a
         * write). Returns the number of iovecs.
         */
        int fillIovec(IovIter iter, long want, boolean write)
        {
            long base = slotMemory.address();
            if (!iter.isDirect()) {
                if (bounce == null) {
                    bounce = ByteBuffer.allocateDirect(BOUNCE_SIZE);
                }
                int length = (int) Math.min(want, BOUNCE_SIZE);
                bounce.clear().limit(length);
                if (write) {
                    int copied = iter.copyFromIter(bounce);
                    // the loop device expects the iterator advanced by what was written, at completion
                    iter.revert(copied);
                }
                bounced = true;
                submittedBytes = length;
                memory.putLong(iovecs - base, DirectMemory.address(bounce));
                memory.putLong(iovecs - base + 8, length);
                return 1;
            }
            bounced = false;
            long total = 0;
            int n = 0;
            int segments = iter.nrSegs();
            while (n < segments && n < IOV_PER_SLOT && total < want) {
                long length = Math.min(iter.segmentLength(n), want - total);
                long entry = iovecs - base + (long) IOVEC_SIZE * n;
                memory.putLong(entry, iter.segmentAddress(n));
                memory.putLong(entry + 8, length);
                total += length;
                n++;
            }
            submittedBytes = total;
            return n;
        }

        /** The kiocb's result for librbd's return value; advances the iterator by what was transferred. */
        long finish(Kiocb kiocb, long ret)
        {
            if (op == OP_OTHER) {
                return ret < 0 ? ret : 0;
            }
            if (ret < 0) {
                return ret;
            }
            // a read returns the bytes read, a write 0 or the bytes written: both moved what was asked
            long done = op == OP_READ ? Math.min(ret, submittedBytes) : submittedBytes;
            IovIter iter = kiocb.iter();
            if (bounced && op == OP_READ) {
                bounce.clear().limit((int) done);
                iter.copyToIter(bounce);
            }
            else {
                iter.advance(done);
            }
            return done;
        }
    }
}
