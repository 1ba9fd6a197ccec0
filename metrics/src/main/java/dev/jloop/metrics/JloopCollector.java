package dev.jloop.metrics;

import dev.jloop.api.Bio;
import dev.jloop.api.ConnectionStatus;
import dev.jloop.api.Errno;
import dev.jloop.api.FrontendStatus;
import dev.jloop.loop.stats.DeviceStats;
import dev.jloop.loop.stats.ExportStats;
import dev.jloop.loop.stats.LatencyHistogram;
import dev.jloop.loop.stats.OpStats;
import dev.jloop.loop.stats.ServerStats;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.CounterSnapshot.CounterDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot.GaugeDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot.HistogramDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import io.prometheus.metrics.model.snapshots.Unit;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

import static java.util.Objects.requireNonNull;

/**
 * jloop's series, made from the loop devices' counters and the frontend's status at each scrape: the
 * request path only adds to its counters, and everything Prometheus wants (doubles, labels,
 * cumulative buckets) is made here. Names follow node_exporter's {@code node_disk_*} series.
 */
final class JloopCollector
        implements MultiCollector
{
    /** Bucket bounds of the latency histograms: 2^10 ns (about 1 us) to 2^35 ns (about 34 s), each a bound of {@link LatencyHistogram}'s buckets, so that the counts are exact. */
    static final long[] BOUNDS_NANOS;

    static {
        BOUNDS_NANOS = new long[26];
        for (int i = 0; i < BOUNDS_NANOS.length; i++) {
            BOUNDS_NANOS[i] = 1L << (10 + i);
        }
    }

    private static final Bio.Op[] OPS = Bio.Op.values();

    private final ServerStats server;

    JloopCollector(ServerStats server)
    {
        this.server = requireNonNull(server, "server is null");
    }

    /** The {@code op} label of an operation: read, write, flush, discard, write_zeroes, cache. */
    static String label(Bio.Op op)
    {
        return op.name().toLowerCase(Locale.ROOT);
    }

    @Override
    public MetricSnapshots collect()
    {
        List<ExportStats> exports = server.exports();
        List<MetricSnapshot> snapshots = new ArrayList<>();
        snapshots.add(counter("jloop_reads_completed", "Read requests completed, failed ones included", exports, Bio.Op.READ, false));
        snapshots.add(counter("jloop_read_bytes", "Bytes read by requests that succeeded", exports, Bio.Op.READ, true));
        snapshots.add(counter("jloop_writes_completed", "Write requests completed, failed ones included", exports, Bio.Op.WRITE, false));
        snapshots.add(counter("jloop_written_bytes", "Bytes written by requests that succeeded", exports, Bio.Op.WRITE, true));
        snapshots.add(counter("jloop_discards_completed", "Discard (trim) requests completed, failed ones included", exports, Bio.Op.DISCARD, false));
        snapshots.add(counter("jloop_discarded_bytes", "Bytes discarded by requests that succeeded", exports, Bio.Op.DISCARD, true));
        snapshots.add(counter("jloop_zeroes_completed", "Write-zeroes requests completed, failed ones included", exports, Bio.Op.WRITE_ZEROES, false));
        snapshots.add(counter("jloop_zeroed_bytes", "Bytes zeroed by requests that succeeded", exports, Bio.Op.WRITE_ZEROES, true));
        snapshots.add(counter("jloop_flush_requests", "Flush requests completed, failed ones included", exports, Bio.Op.FLUSH, false));
        snapshots.add(counter("jloop_cache_requests", "Cache (read-ahead) requests completed, failed ones included", exports, Bio.Op.CACHE, false));
        snapshots.add(errors(exports));
        snapshots.add(latency(exports));

        GaugeSnapshot.Builder inflight = GaugeSnapshot.builder().name("jloop_inflight_requests")
                .help("Requests the loop device has taken and not yet completed (queue depth)");
        for (ExportStats export : exports) {
            inflight.dataPoint(GaugeDataPointSnapshot.builder().labels(labels(export)).value(export.device().inFlight()).build());
        }
        snapshots.add(inflight.build());

        FrontendStatus frontend = server.frontend();
        String frontendName = exports.isEmpty() ? "" : exports.get(0).frontend();
        Map<String, Integer> byTransport = new TreeMap<>();
        for (ConnectionStatus connection : frontend.connections()) {
            byTransport.merge(connection.transport() + "\0" + connection.tls(), 1, Integer::sum);
        }
        GaugeSnapshot.Builder connections = GaugeSnapshot.builder().name("jloop_connections").help("Clients connected now, by transport and TLS");
        for (Map.Entry<String, Integer> entry : byTransport.entrySet()) {
            String[] key = entry.getKey().split("\0");
            connections.dataPoint(GaugeDataPointSnapshot.builder()
                    .labels(Labels.of("frontend", frontendName, "transport", key[0], "tls", key[1]))
                    .value(entry.getValue())
                    .build());
        }
        snapshots.add(connections.build());

        GaugeSnapshot.Builder queues = GaugeSnapshot.builder().name("jloop_ublk_queue_depth").help("Requests in flight on each ublk queue now");
        List<Integer> depths = frontend.queueDepths();
        for (int queue = 0; queue < depths.size(); queue++) {
            queues.dataPoint(GaugeDataPointSnapshot.builder().labels(Labels.of("frontend", frontendName, "queue", String.valueOf(queue))).value(depths.get(queue)).build());
        }
        snapshots.add(queues.build());

        snapshots.add(GaugeSnapshot.builder().name("jloop_page_pool_in_use_bytes").help("Bytes of the request page pool holding request payloads now")
                .dataPoint(GaugeDataPointSnapshot.builder().labels(Labels.of("frontend", frontendName)).value(frontend.pageBytesInUse()).build())
                .build());
        snapshots.add(GaugeSnapshot.builder().name("jloop_page_pool_idle_bytes").help("Bytes of the request page pool allocated and free for the next requests")
                .dataPoint(GaugeDataPointSnapshot.builder().labels(Labels.of("frontend", frontendName)).value(frontend.pageBytesIdle()).build())
                .build());
        return new MetricSnapshots(snapshots);
    }

    private static Labels labels(ExportStats export)
    {
        return Labels.of("export", export.export(), "backend", export.backend(), "frontend", export.frontend());
    }

    private static CounterSnapshot counter(String name, String help, List<ExportStats> exports, Bio.Op op, boolean bytes)
    {
        CounterSnapshot.Builder builder = CounterSnapshot.builder().name(name).help(help);
        for (ExportStats export : exports) {
            OpStats stats = export.stats().op(op);
            builder.dataPoint(CounterDataPointSnapshot.builder().labels(labels(export)).value(bytes ? stats.bytes() : stats.completed()).build());
        }
        return builder.build();
    }

    private static CounterSnapshot errors(List<ExportStats> exports)
    {
        CounterSnapshot.Builder builder = CounterSnapshot.builder().name("jloop_errors").help("Requests that failed, by operation and errno");
        for (ExportStats export : exports) {
            DeviceStats stats = export.stats();
            for (Bio.Op op : OPS) {
                OpStats opStats = stats.op(op);
                if (opStats.errors() == 0) {
                    continue;
                }
                for (int errno = 1; errno <= OpStats.MAX_ERRNO; errno++) {
                    long n = opStats.errors(errno);
                    if (n > 0) {
                        builder.dataPoint(CounterDataPointSnapshot.builder()
                                .labels(labels(export).add("op", label(op)).add("errno", Errno.name(-errno)))
                                .value(n)
                                .build());
                    }
                }
            }
        }
        return builder.build();
    }

    private static HistogramSnapshot latency(List<ExportStats> exports)
    {
        HistogramSnapshot.Builder builder = HistogramSnapshot.builder().name("jloop_request_duration_seconds").unit(Unit.SECONDS)
                .help("Time from a request's submission to the loop device to its completion, by operation");
        for (ExportStats export : exports) {
            DeviceStats stats = export.stats();
            for (Bio.Op op : OPS) {
                LatencyHistogram.Snapshot latency = stats.op(op).latency();
                builder.dataPoint(HistogramDataPointSnapshot.builder()
                        .labels(labels(export).add("op", label(op)))
                        .classicHistogramBuckets(buckets(latency))
                        .sum(latency.sum() / 1e9)
                        .build());
            }
        }
        return builder.build();
    }

    /** The snapshot's fine buckets added up into {@link #BOUNDS_NANOS} and +Inf (counts per bucket, not cumulative). */
    static ClassicHistogramBuckets buckets(LatencyHistogram.Snapshot latency)
    {
        double[] bounds = new double[BOUNDS_NANOS.length + 1];
        long[] counts = new long[BOUNDS_NANOS.length + 1];
        long below = 0;
        for (int i = 0; i < BOUNDS_NANOS.length; i++) {
            bounds[i] = BOUNDS_NANOS[i] / 1e9;
            long cumulative = latency.countBelow(BOUNDS_NANOS[i]);
            counts[i] = cumulative - below;
            below = cumulative;
        }
        bounds[BOUNDS_NANOS.length] = Double.POSITIVE_INFINITY;
        counts[BOUNDS_NANOS.length] = latency.count() - below;
        return ClassicHistogramBuckets.of(bounds, counts);
    }
}
