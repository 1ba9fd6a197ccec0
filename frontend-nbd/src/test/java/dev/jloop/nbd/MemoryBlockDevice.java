package dev.jloop.nbd;

import dev.jloop.api.Bio;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.DeviceCapabilities.Support;
import dev.jloop.api.IovIter;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A fake {@link BlockDevice} over sparse memory (4 KiB chunks, absent ones read as zeros), so a test
 * can serve a device larger than its heap. It records what it was asked, can fail requests with a
 * chosen errno, and can hold bios until a number of them are in flight and then complete them in
 * reverse order from its own thread, to show replies going out in completion order.
 */
final class MemoryBlockDevice
        implements BlockDevice
{
    private static final int CHUNK = 4096;

    private final long size;
    private final DeviceCapabilities capabilities;
    private final Map<Long, byte[]> chunks = new HashMap<>();
    private final List<String> log = Collections.synchronizedList(new ArrayList<>());
    private final List<Bio> held = new ArrayList<>();
    private final java.util.concurrent.atomic.AtomicInteger plugDepth = new java.util.concurrent.atomic.AtomicInteger();
    private final java.util.concurrent.atomic.AtomicInteger submitsUnderPlug = new java.util.concurrent.atomic.AtomicInteger();
    private volatile int error;
    private int holdUntil;

    MemoryBlockDevice(long size, DeviceCapabilities capabilities)
    {
        this.size = size;
        this.capabilities = capabilities;
    }

    static DeviceCapabilities allCapabilities()
    {
        return DeviceCapabilities.builder().flush(true).fua(Support.NATIVE).trim(true).zero(Support.NATIVE).fastZero(true)
                .multiConn(true).extents(true).cache(Support.NATIVE).build();
    }

    /** Fails every following request with {@code -errno} (0 to succeed again). */
    void failWith(int errno)
    {
        this.error = errno;
    }

    /** Holds bios until {@code count} are in flight, then completes them newest first. */
    synchronized void holdUntil(int count)
    {
        this.holdUntil = count;
    }

    /** What the device was asked, e.g. {@code "WRITE_ZEROES 0 4096 flags=3"}. */
    List<String> log()
    {
        synchronized (log) {
            return List.copyOf(log);
        }
    }

    synchronized byte[] read(long offset, int length)
    {
        byte[] out = new byte[length];
        int done = 0;
        while (done < length) {
            long position = offset + done;
            int inChunk = (int) (position % CHUNK);
            int n = Math.min(CHUNK - inChunk, length - done);
            byte[] chunk = chunks.get(position / CHUNK);
            if (chunk != null) {
                System.arraycopy(chunk, inChunk, out, done, n);
            }
            done += n;
        }
        return out;
    }

    synchronized void write(long offset, byte[] data)
    {
        int done = 0;
        while (done < data.length) {
            long position = offset + done;
            int inChunk = (int) (position % CHUNK);
            int n = Math.min(CHUNK - inChunk, data.length - done);
            System.arraycopy(data, done, chunks.computeIfAbsent(position / CHUNK, k -> new byte[CHUNK]), inChunk, n);
            done += n;
        }
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

    /** Chunks never written, or discarded, are holes that read as zeros; written ones are data. */
    @Override
    public synchronized long extents(long offset, long length, dev.jloop.api.ExtentSink sink)
    {
        if (!capabilities.extents()) {
            return BlockDevice.super.extents(offset, length, sink);
        }
        if (offset < 0 || length < 0 || offset > size || length > size - offset) {
            return -dev.jloop.api.Errno.EINVAL;
        }
        log.add("EXTENTS " + offset + " " + length);
        if (error != 0) {
            return -error;
        }
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            boolean data = chunks.containsKey(pos / CHUNK);
            long next = Math.min(end, (pos / CHUNK + 1) * CHUNK);
            while (next < end && chunks.containsKey(next / CHUNK) == data) {
                next = Math.min(end, next + CHUNK);
            }
            if (!sink.extent(pos, next - pos, data ? dev.jloop.api.ExtentSink.DATA : dev.jloop.api.ExtentSink.HOLE | dev.jloop.api.ExtentSink.ZERO)) {
                return 0;
            }
            pos = next;
        }
        return 0;
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
            throw new IllegalStateException("unplug without plug");
        }
    }

    /** Plugs not yet unplugged: 0 once the frontend is done. */
    int plugDepth()
    {
        return plugDepth.get();
    }

    int submitsUnderPlug()
    {
        return submitsUnderPlug.get();
    }

    @Override
    public void submit(Bio bio)
    {
        if (plugDepth.get() > 0) {
            submitsUnderPlug.incrementAndGet();
        }
        log.add(bio.op() + " " + bio.offset() + " " + bio.length() + " flags=" + bio.flags());
        List<Bio> batch = null;
        synchronized (this) {
            if (holdUntil > 0) {
                held.add(bio);
                if (held.size() < holdUntil) {
                    return;
                }
                batch = new ArrayList<>(held);
                held.clear();
                holdUntil = 0;
            }
        }
        if (batch == null) {
            execute(bio);
            return;
        }
        Collections.reverse(batch);
        List<Bio> newestFirst = batch;
        Thread completer = new Thread(() -> newestFirst.forEach(this::execute), "fake-device-completer");
        completer.start();
    }

    private void execute(Bio bio)
    {
        if (error != 0) {
            bio.endIo(-error);
            return;
        }
        IovIter iter = bio.iter();
        switch (bio.op()) {
            case READ: {
                byte[] data = read(bio.offset(), (int) bio.length());
                iter.copyToIter(data, 0, data.length);
                break;
            }
            case WRITE: {
                byte[] data = new byte[(int) bio.length()];
                iter.copyFromIter(data, 0, data.length);
                write(bio.offset(), data);
                break;
            }
            case DISCARD:
                zero(bio.offset(), bio.length());
                break;
            case WRITE_ZEROES:
                if (bio.noFallback() && capabilities.zero() != Support.NATIVE) {
                    bio.endIo(-dev.jloop.api.Errno.EOPNOTSUPP);
                    return;
                }
                zero(bio.offset(), bio.length());
                break;
            case FLUSH:
                break;
        }
        bio.endIo(0);
    }

    private synchronized void zero(long offset, long length)
    {
        long done = 0;
        while (done < length) {
            long position = offset + done;
            int inChunk = (int) (position % CHUNK);
            int n = (int) Math.min(CHUNK - inChunk, length - done);
            byte[] chunk = chunks.get(position / CHUNK);
            if (chunk != null) {
                java.util.Arrays.fill(chunk, inChunk, inChunk + n, (byte) 0);
                if (n == CHUNK) {
                    // a whole chunk zeroed becomes a hole again, as a punched one would
                    chunks.remove(position / CHUNK);
                }
            }
            done += n;
        }
    }

    @Override
    public void close() {}
}
