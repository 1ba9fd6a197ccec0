package dev.jloop.filter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Predicate;

/**
 * Files as on a disk with a volatile write cache, for the overlay's crash tests
 * ({@link CowOverlay.ChannelOpener}): a write stays in the cache until a {@code force} of its
 * channel, and {@link #cut()} turns the power off, keeping a random share of each channel's cached
 * writes, sector by sector ({@value #SECTOR} bytes), and closing every channel as the end of a
 * process would (which releases its locks). The real files then hold what survived.
 *
 * <p>{@link #cutAfter} cuts the power inside the n-th write or force from now, so that a crash can
 * fall in the middle of a flush. A channel closed cleanly hands its cached writes to the real file
 * unsynced, as the page cache keeps them; the overlay syncs before it closes, so this is no way out.
 *
 * <p>One lie, to prove the checker is not blind: {@code ignoreForce} names files whose force
 * makes nothing durable.
 */
final class PowerCutFiles
{
    static final int SECTOR = 512;

    private final Random random;
    private final Predicate<Path> ignoreForce;
    private final List<Volatile> open = new ArrayList<>();
    private boolean on = true;
    private long budget = Long.MAX_VALUE;

    PowerCutFiles(Random random)
    {
        this(random, path -> false);
    }

    PowerCutFiles(Random random, Predicate<Path> ignoreForce)
    {
        this.random = random;
        this.ignoreForce = ignoreForce;
    }

    FileChannel open(Path path, OpenOption... options)
            throws IOException
    {
        synchronized (this) {
            if (!on) {
                throw new IOException("the power is off");
            }
            Volatile channel = new Volatile(FileChannel.open(path, options), ignoreForce.test(path));
            open.add(channel);
            return channel;
        }
    }

    /** Cuts the power inside the {@code calls}-th write or force from now (0: the next one). */
    synchronized void cutAfter(long calls)
    {
        budget = calls;
    }

    /** Turns the power off now. */
    synchronized void cut()
            throws IOException
    {
        if (!on) {
            return;
        }
        on = false;
        for (Volatile channel : open) {
            channel.lose(random);
        }
        open.clear();
    }

    synchronized void powerOn()
    {
        on = true;
        budget = Long.MAX_VALUE;
    }

    synchronized boolean isOn()
    {
        return on;
    }

    /** Before every write and force: fails when the power is off, and cuts it when the budget is spent. */
    private void spend()
            throws IOException
    {
        synchronized (this) {
            if (!on) {
                throw new IOException("the power is off");
            }
            if (budget-- > 0) {
                return;
            }
            cut();
        }
        throw new IOException("power cut");
    }

    private synchronized void closed(Volatile channel)
    {
        open.remove(channel);
    }

    private record Write(long position, byte[] data) {}

    private final class Volatile
            extends FileChannel
    {
        private final FileChannel file;
        private final boolean ignoreForce;
        private final List<Write> cached = new ArrayList<>();
        private boolean lost;

        Volatile(FileChannel file, boolean ignoreForce)
        {
            this.file = file;
            this.ignoreForce = ignoreForce;
        }

        @Override
        public synchronized int read(ByteBuffer dst, long position)
                throws IOException
        {
            check();
            long size = size();
            if (position >= size) {
                return -1;
            }
            byte[] bytes = new byte[(int) Math.min(dst.remaining(), size - position)];
            ByteBuffer buffer = ByteBuffer.wrap(bytes);
            while (buffer.hasRemaining() && file.read(buffer, position + buffer.position()) >= 0) {
                // the rest, past the end of the real file, stays zeros
            }
            for (Write write : cached) {
                long from = Math.max(position, write.position());
                long to = Math.min(position + bytes.length, write.position() + write.data().length);
                if (from < to) {
                    System.arraycopy(write.data(), (int) (from - write.position()), bytes, (int) (from - position), (int) (to - from));
                }
            }
            dst.put(bytes);
            return bytes.length;
        }

        @Override
        public int write(ByteBuffer src, long position)
                throws IOException
        {
            spend();
            synchronized (this) {
                check();
                byte[] data = new byte[src.remaining()];
                src.get(data);
                cached.add(new Write(position, data));
                return data.length;
            }
        }

        @Override
        public void force(boolean metaData)
                throws IOException
        {
            spend();
            synchronized (this) {
                check();
                if (ignoreForce) {
                    return;
                }
                for (Write write : cached) {
                    writeThrough(write.position(), write.data(), 0, write.data().length);
                }
                cached.clear();
                file.force(metaData);
            }
        }

        @Override
        public synchronized long size()
                throws IOException
        {
            check();
            long size = file.size();
            for (Write write : cached) {
                size = Math.max(size, write.position() + write.data().length);
            }
            return size;
        }

        @Override
        public FileLock tryLock(long position, long size, boolean shared)
                throws IOException
        {
            return file.tryLock(position, size, shared);
        }

        /** The cut: each sector of each cached write reaches the disk or not, at random. */
        synchronized void lose(Random random)
                throws IOException
        {
            for (Write write : cached) {
                long end = write.position() + write.data().length;
                for (long from = write.position(); from < end; ) {
                    long to = Math.min(end, (from / SECTOR + 1) * SECTOR);
                    if (random.nextBoolean()) {
                        writeThrough(from, write.data(), (int) (from - write.position()), (int) (to - from));
                    }
                    from = to;
                }
            }
            cached.clear();
            lost = true;
            file.close();
        }

        private void writeThrough(long position, byte[] data, int offset, int length)
                throws IOException
        {
            ByteBuffer buffer = ByteBuffer.wrap(data, offset, length);
            while (buffer.hasRemaining()) {
                file.write(buffer, position + buffer.position() - offset);
            }
        }

        private void check()
                throws IOException
        {
            if (lost) {
                throw new IOException("the power is off");
            }
        }

        @Override
        protected void implCloseChannel()
                throws IOException
        {
            // not under this channel's monitor: a cut takes the files' monitor, then the channels'
            closed(this);
            synchronized (this) {
                if (lost) {
                    return;
                }
                for (Write write : cached) {
                    writeThrough(write.position(), write.data(), 0, write.data().length);
                }
                cached.clear();
                file.close();
            }
        }

        @Override
        public int read(ByteBuffer dst)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public long read(ByteBuffer[] dsts, int offset, int length)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public int write(ByteBuffer src)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public long position()
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public FileChannel position(long newPosition)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public FileChannel truncate(long size)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public long transferTo(long position, long count, WritableByteChannel target)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public long transferFrom(ReadableByteChannel src, long position, long count)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public MappedByteBuffer map(MapMode mode, long position, long size)
        {
            throw new UnsupportedOperationException();
        }

        @Override
        public FileLock lock(long position, long size, boolean shared)
        {
            throw new UnsupportedOperationException();
        }
    }
}
