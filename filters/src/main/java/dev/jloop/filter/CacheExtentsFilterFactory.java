package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * {@code cacheextents}: keeps the last answer of the file's {@link BackingFile#extents} and answers
 * the queries that fall inside it, as nbdkit's cacheextents filter, for a client that maps a file
 * one extent at a time ({@code qemu-img convert}, {@code qemu-img map}) above a file that is slow to
 * report its holes but reports many as fast as one (a remote backend). NBD reads of a file with
 * extents ask for them too, so a reader of such a file gains as well. No options:
 * {@code jloop serve --filter cacheextents ...}.
 *
 * <p>On a query it has no answer for, the filter asks the file below from the query's offset for at
 * least 1 GiB (or to the end of the file), keeping up to 1024 extents, and answers from that. A
 * write, trim or zero, when it completes, cuts the answer short where the change begins (dropping
 * it when the change covers its start), and an answer being asked for while a change overlapping it
 * completes is not kept: a query never sees extents older than a change that completed before it.
 */
public final class CacheExtentsFilterFactory
        implements FilterFactory
{
    @Override
    public String name()
    {
        return "cacheextents";
    }

    @Override
    public String description()
    {
        return "keeps the last extents answer and serves queries inside it (for files slow to report their holes)";
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        validate(options);
        return new CacheExtentsBackingFile(next);
    }

    static final class CacheExtentsBackingFile
            extends ForwardingBackingFile
    {
        static final long AHEAD = 1L << 30;
        static final int MAX_EXTENTS = 1024;

        private final long size;
        private final Object lock = new Object();
        // guarded by lock
        private Answer cached;
        private final List<Query> asking = new ArrayList<>();

        CacheExtentsBackingFile(BackingFile next)
        {
            super(next);
            this.size = next.size();
        }

        @Override
        public long extents(long offset, long length, ExtentSink sink)
        {
            if (offset < 0 || length <= 0) {
                return super.extents(offset, length, sink);
            }
            long end = offset + length;
            Answer answer;
            synchronized (lock) {
                answer = cached;
            }
            if (answer != null && answer.start() <= offset && end <= answer.end()) {
                answer.replay(offset, end, sink);
                return 0;
            }

            Query query = new Query(offset, Math.max(end, Math.min(size, offset + AHEAD)));
            synchronized (lock) {
                asking.add(query);
            }
            long res;
            try {
                res = super.extents(offset, query.end - offset, query);
            }
            catch (RuntimeException e) {
                synchronized (lock) {
                    asking.remove(query);
                }
                throw e;
            }
            answer = res < 0 ? null : query.answer();
            synchronized (lock) {
                // one step: a change that completes after it no longer finds the query, but the answer
                asking.remove(query);
                if (answer != null && !query.stale) {
                    cached = answer;
                }
            }
            if (res < 0) {
                return res;
            }
            if (answer == null) {
                // not the ascending, contiguous report the contract asks for: pass the question on as it came
                return super.extents(offset, length, sink);
            }
            if (!answer.replay(offset, Math.min(end, answer.end()), sink) || answer.end() >= end) {
                return 0;
            }
            // more extents than an answer keeps: the rest straight from the file
            return super.extents(answer.end(), end - answer.end(), sink);
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

        private long changing(Kiocb kiocb, long from, long to)
        {
            // Until it completes, a change runs alongside any query, which may see the extents from
            // before it; from its completion on none may.
            return passDown(kiocb, (child, res) -> {
                invalidate(from, to);
                kiocb.complete(res);
            });
        }

        private void invalidate(long from, long to)
        {
            synchronized (lock) {
                if (cached != null && cached.start() < to && from < cached.end()) {
                    cached = from > cached.start() ? cached.before(from) : null;
                }
                for (Query query : asking) {
                    if (query.start < to && from < query.end) {
                        query.stale = true;
                    }
                }
            }
        }

        /** Extents of {@code [start, end)}: {@code offsets[i]} starts one of {@code types[i]}, up to the next or {@code end}. */
        record Answer(long start, long end, long[] offsets, int[] types)
        {
            /** Reports {@code [from, to)}, which the answer holds; returns whether the sink wants more. */
            boolean replay(long from, long to, ExtentSink sink)
            {
                int i = Arrays.binarySearch(offsets, from);
                if (i < 0) {
                    i = -i - 2;
                }
                for (long at = from; at < to; i++) {
                    long next = Math.min(to, i + 1 < offsets.length ? offsets[i + 1] : end);
                    if (!sink.extent(at, next - at, types[i])) {
                        return false;
                    }
                    at = next;
                }
                return true;
            }

            /** The part before {@code at}, which is inside the answer. */
            Answer before(long at)
            {
                int i = Arrays.binarySearch(offsets, at);
                int count = i >= 0 ? i : -i - 1;
                return new Answer(start, at, Arrays.copyOf(offsets, count), Arrays.copyOf(types, count));
            }
        }

        /** A question to the file below, collecting its answer; {@code stale} once a change overlapping it completed meanwhile. */
        private static final class Query
                implements ExtentSink
        {
            final long start;
            final long end;
            // guarded by the file's lock
            boolean stale;
            private final long[] offsets = new long[MAX_EXTENTS];
            private final int[] types = new int[MAX_EXTENTS];
            private int count;
            private long next;
            private boolean malformed;

            Query(long start, long end)
            {
                this.start = start;
                this.end = end;
                this.next = start;
            }

            @Override
            public boolean extent(long offset, long length, int type)
            {
                if (offset != next || length <= 0) {
                    malformed = true;
                    return false;
                }
                long clipped = Math.min(length, end - offset);
                if (count > 0 && types[count - 1] == type) {
                    next = offset + clipped;
                    return next < end;
                }
                if (count == MAX_EXTENTS) {
                    return false;
                }
                offsets[count] = offset;
                types[count] = type;
                count++;
                next = offset + clipped;
                return next < end;
            }

            Answer answer()
            {
                if (malformed || count == 0) {
                    return null;
                }
                return new Answer(start, next, Arrays.copyOf(offsets, count), Arrays.copyOf(types, count));
            }
        }
    }
}
