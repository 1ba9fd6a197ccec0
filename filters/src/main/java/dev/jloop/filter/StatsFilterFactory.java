package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.loop.stats.LatencyHistogram;
import dev.jloop.loop.stats.OpStats;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * {@code stats}: counts requests per operation, their bytes and their latency, as nbdkit's stats
 * filter, and writes the numbers when the file closes and whenever jloop gets {@code SIGUSR1}
 * ({@code kill -USR1 PID}), every export with the filter at once. To {@code stats-file}, replaced
 * each time (or appended to with {@code stats-append}), or to standard error when no file is given.
 * Example: {@code jloop serve --filter stats:stats-file=/tmp/disk.stats disk.img}, and:
 * <pre>
 * disk.img: closed after 12.503164 s
 *   total: 1311 ops, 85983232 bytes, 6.88 MB/s
 *   read: 1024 ops, 67108864 bytes, 5.37 MB/s, latency p50=41.2us p90=88.1us p99=412us p99.9=1.21ms max=3.05ms
 *   write: 256 ops, 16777216 bytes, 1.34 MB/s, latency p50=52.0us p90=101us p99=530us p99.9=2.10ms max=2.10ms
 *   flush: 30 ops, 0 bytes, 0.00 MB/s, latency p50=2.05ms p90=4.11ms p99=6.02ms p99.9=6.02ms max=6.02ms
 *   trim: 1 ops, 2097152 bytes, 0.17 MB/s, 1 errors, latency p50=12.1us p90=12.1us p99=12.1us p99.9=12.1us max=12.1us
 * </pre>
 * A section per export's file ({@code open for} while it is served); a line per operation that
 * happened: read, write, flush, trim (a fallocate that punches a hole), zero (any other fallocate),
 * extents and cache. Bytes are those transferred by reads and writes and the lengths of trims,
 * zeroes, extents and cache requests that succeeded; MB/s is 10^6 bytes per second over the time
 * the file has been open; errors are requests that failed; latency is from the call to the
 * completion. A replaced file always holds every export writing to it, the closed ones with their
 * final numbers; an appended file or standard error gets an export's section when it closes and
 * every open export's on {@code SIGUSR1}.
 *
 * <p>Counting costs a request a few atomic additions, in the same {@link OpStats} the loop device
 * counts every export's requests in (and the metrics endpoint and {@code jloop status} show):
 * counts and bytes in {@code LongAdder}s, latencies in a striped {@link LatencyHistogram}, read only
 * when the numbers are written. Percentiles are the upper bounds of its buckets, at most 6.25 %
 * above the true value, never above the largest.
 */
public final class StatsFilterFactory
        implements FilterFactory
{
    static final String FILE = "stats-file";
    static final String APPEND = "stats-append";

    @Override
    public String name()
    {
        return "stats";
    }

    @Override
    public String description()
    {
        return "counts requests, bytes, rates and latency percentiles per operation; writes them at close and on SIGUSR1";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(FILE, PluginOption.Type.PATH, null, "the file the statistics are written to, at close and on SIGUSR1; standard error when not given",
                        "--filter stats --stats-file /tmp/disk.stats"),
                PluginOption.flag(APPEND, "append to the stats file instead of replacing it", "--filter stats --stats-file /tmp/disk.stats --stats-append"));
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> given)
            throws IOException
    {
        PluginOptions options = PluginOptions.parse("the stats filter", options(), given);
        Path path = options.path(FILE);
        if (path != null) {
            // find out now, not at close, that the file cannot be written; creates it, changes nothing in it
            try (OutputStream ignored = Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
                // nothing to write yet
            }
        }
        StatsBackingFile file = new StatsBackingFile(next, String.valueOf(export.path().getFileName()));
        StatsReports.opened(file, path, options.flag(APPEND));
        return file;
    }

    /** What the statistics count: the operations of {@link Operation}, and the two synchronous calls. */
    enum Row
    {
        READ, WRITE, FLUSH, TRIM, ZERO, EXTENTS, CACHE;

        private static final Row[] BY_OPERATION = Arrays.stream(Operation.values()).map(operation -> valueOf(operation.name())).toArray(Row[]::new);

        static Row of(Kiocb kiocb)
        {
            return BY_OPERATION[Operation.of(kiocb).ordinal()];
        }

        String label()
        {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    static final class StatsBackingFile
            extends ForwardingBackingFile
    {
        private static final double[] PERCENTILES = {50, 90, 99, 99.9};

        private final String name;
        private final OpStats[] counters = new OpStats[Row.values().length];
        private final long openedNanos = System.nanoTime();
        private volatile long closedNanos;
        private volatile boolean closed;

        StatsBackingFile(BackingFile next, String name)
        {
            super(next);
            this.name = requireNonNull(name, "name is null");
            for (int i = 0; i < counters.length; i++) {
                counters[i] = new OpStats();
            }
        }

        String name()
        {
            return name;
        }

        boolean isClosed()
        {
            return closed;
        }

        OpStats counter(Row row)
        {
            return counters[row.ordinal()];
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return counted(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return counted(kiocb);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            return counted(kiocb);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return counted(kiocb);
        }

        @Override
        public long extents(long offset, long length, ExtentSink sink)
        {
            long start = System.nanoTime();
            long res = super.extents(offset, length, sink);
            counter(Row.EXTENTS).record(System.nanoTime() - start, res == 0 ? length : 0, (int) Math.min(0, res));
            return res;
        }

        @Override
        public long cache(long offset, long length)
        {
            long start = System.nanoTime();
            long res = super.cache(offset, length);
            counter(Row.CACHE).record(System.nanoTime() - start, res == 0 ? length : 0, (int) Math.min(0, res));
            return res;
        }

        @Override
        public void close()
                throws IOException
        {
            if (closed) {
                return;
            }
            closedNanos = System.nanoTime();
            closed = true;
            try {
                super.close();
            }
            finally {
                StatsReports.closed(this);
            }
        }

        private long counted(Kiocb kiocb)
        {
            OpStats counter = counters[Row.of(kiocb).ordinal()];
            boolean transfer = kiocb.op() == Kiocb.Op.READ || kiocb.op() == Kiocb.Op.WRITE;
            long length = kiocb.length();
            long start = System.nanoTime();
            return passDown(kiocb, (child, res) -> {
                counter.record(System.nanoTime() - start, transfer ? res : length, (int) Math.min(0, res));
                kiocb.complete(res);
            });
        }

        /** This file's section of a report. */
        void report(StringBuilder out)
        {
            boolean ended = closed;
            long nanos = (ended ? closedNanos : System.nanoTime()) - openedNanos;
            double seconds = nanos / 1e9;
            out.append(name).append(ended ? ": closed after " : ": open for ").append(String.format(Locale.ROOT, "%.6f s", seconds)).append('\n');
            long ops = 0;
            long bytes = 0;
            for (OpStats counter : counters) {
                ops += counter.completed();
                bytes += counter.bytes();
            }
            out.append("  total: ").append(ops).append(" ops, ").append(bytes).append(" bytes, ").append(rate(bytes, seconds)).append('\n');
            for (Row row : Row.values()) {
                OpStats counter = counter(row);
                long count = counter.completed();
                if (count == 0) {
                    continue;
                }
                LatencyHistogram.Snapshot latencies = counter.latency();
                out.append("  ").append(row.label()).append(": ").append(count).append(" ops, ").append(counter.bytes()).append(" bytes, ")
                        .append(rate(counter.bytes(), seconds));
                if (counter.errors() > 0) {
                    out.append(", ").append(counter.errors()).append(" errors");
                }
                out.append(", latency");
                for (double percentile : PERCENTILES) {
                    out.append(" p").append(percentile == Math.rint(percentile) ? String.valueOf((long) percentile) : String.valueOf(percentile))
                            .append('=').append(LatencyHistogram.format(latencies.percentile(percentile)));
                }
                out.append(" max=").append(LatencyHistogram.format(latencies.max())).append('\n');
            }
        }

        private static String rate(long bytes, double seconds)
        {
            return String.format(Locale.ROOT, "%.2f MB/s", seconds > 0 ? bytes / 1e6 / seconds : 0);
        }
    }
}
