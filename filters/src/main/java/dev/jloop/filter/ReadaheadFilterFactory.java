package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.api.Sizes;
import dev.jloop.iter.DirectMemory;
import dev.jloop.iter.KvecIter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * {@code readahead}: reads ahead of a sequential reader, as nbdkit's readahead filter, for a file
 * below that is slow to answer but not to stream (a remote backend). When a read starts where the
 * last one ended, the filter reads the next window, from there on, in one large read of its own; the
 * window starts at 64 KiB and doubles with each one up to {@code readahead-max} (default 2M), and
 * falls back to 64 KiB when the reader jumps elsewhere. Example:
 * {@code jloop serve --backend nbd --filter readahead --readahead-max 8M ...}.
 *
 * <p>The windows read ahead are kept in the filter (at most three times {@code readahead-max} per
 * file, the oldest dropped first) and serve every later read they cover without the file below; a
 * read that comes while the window it falls in is still being read waits for that read instead of
 * making its own. A write, trim or zero drops every window it overlaps when it completes, and a
 * window still being read then is not kept, so a read never sees data older than a write that
 * completed before the read was made.
 *
 * <p>When the file below declares {@link Capabilities#cache()} (it can start a read-ahead itself,
 * as a local file does into the page cache), the filter only asks it to, with
 * {@link BackingFile#cache}, and keeps nothing, as nbdkit's filter does. Its own reads take one of
 * the file's {@link Capabilities#queueDepth()} slots, so it declares one fewer; a file below that
 * takes only one request at a time is never read ahead of.
 */
public final class ReadaheadFilterFactory
        implements FilterFactory
{
    static final String MAX = "readahead-max";
    static final int MIN_WINDOW = 64 * 1024;
    private static final long LARGEST_MAX = 256L << 20;

    // the rare read that waited for a window the file below did not deliver is made again from here:
    // a completion never submits to the file itself
    private static final ExecutorService RETRY = Executors.newSingleThreadExecutor(runnable -> {
        Thread thread = new Thread(runnable, "jloop-readahead");
        thread.setDaemon(true);
        return thread;
    });

    @Override
    public String name()
    {
        return "readahead";
    }

    @Override
    public String description()
    {
        return "reads ahead of sequential reads, in windows growing up to readahead-max (for slow, remote files)";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(PluginOption.of(MAX, PluginOption.Type.SIZE, "2M", "the largest window read ahead of a sequential reader, 64K to 256M",
                "--filter readahead --readahead-max 8M"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        max(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        return new ReadaheadBackingFile(next, max(options));
    }

    private int max(Map<String, String> given)
    {
        long max = PluginOptions.parse("the readahead filter", options(), given).size(MAX, 0);
        if (max < MIN_WINDOW || max > LARGEST_MAX) {
            throw new IllegalArgumentException("--" + MAX + ": " + Sizes.format(max) + " is not from 64K to 256M");
        }
        return (int) max;
    }

    static final class ReadaheadBackingFile
            extends ForwardingBackingFile
    {
        private final int max;
        private final long size;
        private final boolean hint;
        private final boolean prefetching;
        private final Capabilities capabilities;
        private final Object lock = new Object();
        // guarded by lock
        private final TreeMap<Long, Window> windows = new TreeMap<>();
        private final ArrayDeque<Window> byAge = new ArrayDeque<>();
        private final List<Prefetch> reading = new ArrayList<>();
        private long cachedBytes;
        private long nextExpected = -1;
        private long window = MIN_WINDOW;
        private long aheadTo;
        private boolean closed;

        ReadaheadBackingFile(BackingFile next, int max)
        {
            super(next);
            this.max = max;
            this.size = next.size();
            Capabilities below = next.capabilities();
            this.hint = below.cache();
            this.prefetching = hint || below.queueDepth() != 1;
            this.capabilities = hint || below.queueDepth() <= 1 ? below : below.toBuilder().queueDepth(below.queueDepth() - 1).build();
        }

        @Override
        public Capabilities capabilities()
        {
            return capabilities;
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            IovIter iter = kiocb.iter();
            long pos = kiocb.pos();
            long count = iter.count();
            if (count == 0 || pos < 0 || pos >= size || !prefetching) {
                return super.readIter(kiocb);
            }
            long end = pos + count;
            List<Window> hit;
            Prefetch joined = null;
            Prefetch started = null;
            long hintFrom = -1;
            long hintTo = -1;
            synchronized (lock) {
                hit = covering(pos, end);
                if (hit == null) {
                    joined = readingCovering(pos, end);
                }
                boolean sequential = pos == nextExpected || hit != null || joined != null;
                nextExpected = end;
                if (!sequential) {
                    window = MIN_WINDOW;
                    aheadTo = end;
                }
                else {
                    aheadTo = cachedEnd(Math.max(aheadTo, end));
                    if (aheadTo < size && aheadTo - end < window / 2 && (hint || reading.isEmpty())) {
                        long from = aheadTo;
                        long to = Math.min(size, from + Math.min(max, Math.max(window, 2 * count)));
                        if (hint) {
                            hintFrom = from;
                            hintTo = to;
                        }
                        else {
                            started = new Prefetch(from, to);
                            reading.add(started);
                        }
                        aheadTo = to;
                        window = Math.min(max, window * 2);
                    }
                }
                if (joined != null) {
                    joined.waiters.add(kiocb);
                }
            }
            if (started != null) {
                started.submit();
            }
            if (hintFrom >= 0) {
                // advisory: a file that cannot read ahead has lost nothing but the hint
                super.cache(hintFrom, hintTo - hintFrom);
            }
            if (hit != null) {
                return copy(hit, pos, iter);
            }
            if (joined != null) {
                return Kiocb.QUEUED;
            }
            return super.readIter(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return changing(kiocb, kiocb.pos(), kiocb.pos() + kiocb.iter().count());
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return changing(kiocb, kiocb.pos(), kiocb.pos() + kiocb.length());
        }

        /**
         * Waits for the filter's own reads, which the caller of close does not know of, then closes
         * the file below.
         */
        @Override
        public void close()
                throws IOException
        {
            boolean interrupted = false;
            synchronized (lock) {
                closed = true;
                while (!reading.isEmpty()) {
                    try {
                        lock.wait();
                    }
                    catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
                windows.clear();
                byAge.clear();
                cachedBytes = 0;
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
            super.close();
        }

        /** Bytes held in windows; for tests. */
        long cachedBytes()
        {
            synchronized (lock) {
                return cachedBytes;
            }
        }

        private long changing(Kiocb kiocb, long from, long to)
        {
            if (hint) {
                return kiocb.op() == Kiocb.Op.WRITE ? super.writeIter(kiocb) : super.fallocate(kiocb);
            }
            // Until it completes, a change runs alongside any read, which may see the data from before
            // it; from its completion on none may, so that is when windows it overlaps go, and windows
            // still being read that it overlapped are not kept.
            return passDown(kiocb, (child, res) -> {
                invalidate(from, to);
                kiocb.complete(res);
            });
        }

        private void invalidate(long from, long to)
        {
            synchronized (lock) {
                Long first = windows.floorKey(from);
                Iterator<Window> overlapping = windows.subMap(first != null ? first : from, true, to, false).values().iterator();
                while (overlapping.hasNext()) {
                    Window window = overlapping.next();
                    if (window.end() > from) {
                        overlapping.remove();
                        byAge.remove(window);
                        cachedBytes -= window.length();
                    }
                }
                for (Prefetch prefetch : reading) {
                    if (prefetch.from < to && from < prefetch.to) {
                        prefetch.stale = true;
                    }
                }
                if (from < aheadTo && to > nextExpected) {
                    aheadTo = Math.max(nextExpected, from);
                }
            }
        }

        /** The windows that hold all of {@code [from, to)}, in order; {@code null} unless they all do. */
        private List<Window> covering(long from, long to)
        {
            Map.Entry<Long, Window> entry = windows.floorEntry(from);
            if (entry == null || entry.getValue().end() <= from) {
                return null;
            }
            List<Window> covering = new ArrayList<>(2);
            Window window = entry.getValue();
            while (true) {
                covering.add(window);
                if (window.end() >= to) {
                    return covering;
                }
                window = windows.get(window.end());
                if (window == null) {
                    return null;
                }
            }
        }

        private Prefetch readingCovering(long from, long to)
        {
            for (Prefetch prefetch : reading) {
                if (!prefetch.stale && prefetch.from <= from && to <= prefetch.to) {
                    return prefetch;
                }
            }
            return null;
        }

        /** Where the windows that follow on from {@code at} end. */
        private long cachedEnd(long at)
        {
            Map.Entry<Long, Window> entry = windows.floorEntry(at);
            if (entry == null || entry.getValue().end() <= at) {
                return at;
            }
            Window window = entry.getValue();
            while (windows.containsKey(window.end())) {
                window = windows.get(window.end());
            }
            return window.end();
        }

        private void keep(Window window)
        {
            Long first = windows.floorKey(window.start());
            Iterator<Window> overlapping = windows.subMap(first != null ? first : window.start(), true, window.end(), false).values().iterator();
            while (overlapping.hasNext()) {
                Window old = overlapping.next();
                if (old.end() > window.start()) {
                    overlapping.remove();
                    byAge.remove(old);
                    cachedBytes -= old.length();
                }
            }
            windows.put(window.start(), window);
            byAge.addLast(window);
            cachedBytes += window.length();
            while (cachedBytes > 3L * max) {
                Window oldest = byAge.removeFirst();
                windows.remove(oldest.start());
                cachedBytes -= oldest.length();
            }
        }

        private static long copy(List<Window> windows, long pos, IovIter iter)
        {
            long at = pos;
            for (Window window : windows) {
                int offset = (int) (at - window.start());
                int n = (int) Math.min(window.end() - at, iter.count());
                iter.copyToIter(window.data().duplicate().position(offset).limit(offset + n));
                at += n;
            }
            return at - pos;
        }

        /** Data read ahead: {@code data} holds the file from {@code start}; never written to after it is kept. */
        private record Window(long start, ByteBuffer data)
        {
            long length()
            {
                return data.limit();
            }

            long end()
            {
                return start + data.limit();
            }
        }

        /** One read ahead, of {@code [from, to)}, and the reads that wait for it. */
        private final class Prefetch
                implements KiocbCompletion
        {
            final long from;
            final long to;
            // guarded by lock
            final List<Kiocb> waiters = new ArrayList<>();
            boolean stale;
            // set once, before the read is submitted: allocated out of the lock
            private ByteBuffer buffer;

            Prefetch(long from, long to)
            {
                this.from = from;
                this.to = to;
            }

            void submit()
            {
                buffer = DirectMemory.allocateAligned((int) (to - from));
                Kiocb child = new Kiocb(null)
                        .initRw(Kiocb.Op.READ, delegate(), KvecIter.of(IovIter.Direction.DEST, buffer.duplicate()), from, 0)
                        .initCallback(this, null);
                child.markSubmitted();
                long res;
                try {
                    res = delegate().readIter(child);
                }
                catch (RuntimeException e) {
                    res = child.inFlight() ? -Errno.EIO : Kiocb.QUEUED;
                }
                if (res != Kiocb.QUEUED) {
                    child.complete(res);
                }
            }

            @Override
            public void complete(Kiocb child, long res)
            {
                List<Kiocb> served;
                synchronized (lock) {
                    reading.remove(this);
                    if (res > 0 && !stale && !closed) {
                        keep(new Window(from, buffer.duplicate().limit((int) res).slice()));
                    }
                    served = List.copyOf(waiters);
                    lock.notifyAll();
                }
                // A waiter joined while no change overlapping this read had completed since it began:
                // a change completing later ran alongside the waiter, so even a stale result may serve it.
                for (Kiocb waiter : served) {
                    long available = res > 0 ? from + res - waiter.pos() : 0;
                    if (available <= 0) {
                        RETRY.execute(() -> passDown(waiter, (again, result) -> waiter.complete(result)));
                        continue;
                    }
                    int offset = (int) (waiter.pos() - from);
                    int n = (int) Math.min(available, waiter.iter().count());
                    // fewer bytes than asked is a short read, which the device completes with another
                    waiter.iter().copyToIter(buffer.duplicate().position(offset).limit(offset + n));
                    waiter.complete(n);
                }
            }
        }
    }
}
