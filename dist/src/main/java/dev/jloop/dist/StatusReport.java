package dev.jloop.dist;

import dev.jloop.api.Bio;
import dev.jloop.api.ConnectionStatus;
import dev.jloop.api.FrontendStatus;
import dev.jloop.api.Sizes;
import dev.jloop.loop.stats.ExportStats;
import dev.jloop.loop.stats.LatencyHistogram;
import dev.jloop.loop.stats.OpStats;
import dev.jloop.loop.stats.ServerStats;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.Locale;

import static java.util.Objects.requireNonNull;

/**
 * What {@code jloop status} prints: the exports with their totals, per-operation rates and latency
 * percentiles over the last {@value #WINDOW_SECONDS} seconds, the connections, the page pool. The
 * window comes from a sample of every counter taken once a second ({@link #sample()}), so a
 * request costs nothing more.
 */
final class StatusReport
{
    static final int WINDOW_SECONDS = 10;
    private static final Bio.Op[] OPS = Bio.Op.values();

    private final ServerStats server;
    private final String uri;
    private final long startedNanos = System.nanoTime();
    // guarded by this; the oldest first, at most WINDOW_SECONDS + 1
    private final Deque<Sample> samples = new ArrayDeque<>();

    StatusReport(ServerStats server, String uri)
    {
        this.server = requireNonNull(server, "server is null");
        this.uri = requireNonNull(uri, "uri is null");
        sample();
    }

    /** Every counter now, one row per export and operation. */
    private record Sample(long nanos, long[][] completed, long[][] bytes, LatencyHistogram.Snapshot[][] latency) {}

    /** Takes this second's sample; drops the ones older than the window. */
    synchronized void sample()
    {
        samples.addLast(take());
        while (samples.size() > WINDOW_SECONDS + 1) {
            samples.removeFirst();
        }
    }

    private Sample take()
    {
        List<ExportStats> exports = server.exports();
        long[][] completed = new long[exports.size()][OPS.length];
        long[][] bytes = new long[exports.size()][OPS.length];
        LatencyHistogram.Snapshot[][] latency = new LatencyHistogram.Snapshot[exports.size()][OPS.length];
        for (int e = 0; e < exports.size(); e++) {
            for (Bio.Op op : OPS) {
                OpStats stats = exports.get(e).stats().op(op);
                // the latencies first: a request counted there is then surely counted in completed
                latency[e][op.ordinal()] = stats.latency();
                completed[e][op.ordinal()] = stats.completed();
                bytes[e][op.ordinal()] = stats.bytes();
            }
        }
        return new Sample(System.nanoTime(), completed, bytes, latency);
    }

    String render()
    {
        Sample now = take();
        Sample oldest;
        synchronized (this) {
            oldest = samples.peekFirst();
        }
        double seconds = Math.max(1e-3, (now.nanos() - oldest.nanos()) / 1e9);
        StringBuilder out = new StringBuilder();
        Duration up = Duration.ofNanos(System.nanoTime() - startedNanos);
        out.append(String.format(Locale.ROOT, "jloop %d, up %d:%02d:%02d, serving %s; rates and latency over the last %.0f s%n",
                ProcessHandle.current().pid(), up.toHours(), up.toMinutesPart(), up.toSecondsPart(), uri, seconds));
        List<ExportStats> exports = server.exports();
        for (int e = 0; e < exports.size() && e < now.completed().length; e++) {
            ExportStats export = exports.get(e);
            out.append(String.format(Locale.ROOT, "%nexport '%s': %s, backend %s, frontend %s, in flight %d%n",
                    export.export(), export.file(), export.backend(), export.frontend(), export.device().inFlight()));
            out.append(String.format(Locale.ROOT, "  %-12s %12s %16s %10s %10s %10s %10s %8s%n", "op", "requests", "bytes", "req/s", "MB/s", "p50", "p99", "errors"));
            for (Bio.Op op : OPS) {
                int o = op.ordinal();
                OpStats stats = export.stats().op(op);
                long completed = now.completed()[e][o];
                boolean inWindow = e < oldest.completed().length;
                long recent = inWindow ? completed - oldest.completed()[e][o] : completed;
                long recentBytes = inWindow ? now.bytes()[e][o] - oldest.bytes()[e][o] : now.bytes()[e][o];
                LatencyHistogram.Snapshot latency = inWindow ? now.latency()[e][o].minus(oldest.latency()[e][o]) : now.latency()[e][o];
                out.append(String.format(Locale.ROOT, "  %-12s %12d %16d %10.1f %10.2f %10s %10s %8d%n",
                        op.name().toLowerCase(Locale.ROOT), completed, now.bytes()[e][o], recent / seconds, recentBytes / 1e6 / seconds,
                        latency.count() == 0 ? "-" : LatencyHistogram.format(latency.percentile(50)), latency.count() == 0 ? "-" : LatencyHistogram.format(latency.percentile(99)),
                        stats.errors()));
            }
        }
        FrontendStatus frontend = server.frontend();
        out.append(String.format(Locale.ROOT, "%nconnections: %d%n", frontend.connections().size()));
        for (ConnectionStatus connection : frontend.connections()) {
            out.append(String.format(Locale.ROOT, "  %-28s export '%s', %s, TLS %s, in flight %d, %d requests, %d bytes, %d errors%n",
                    connection.client(), connection.export() == null ? "(handshake)" : connection.export(), connection.transport(),
                    connection.tls() ? "on" : "off", connection.inFlight(), connection.requests(), connection.bytes(), connection.errors()));
        }
        if (frontend.pageBytesInUse() + frontend.pageBytesIdle() > 0) {
            out.append(String.format(Locale.ROOT, "page pool: %s in use, %s idle%n", Sizes.format(frontend.pageBytesInUse()), Sizes.format(frontend.pageBytesIdle())));
        }
        List<Integer> queues = frontend.queueDepths();
        for (int q = 0; q < queues.size(); q++) {
            out.append(String.format(Locale.ROOT, "queue %d: %d in flight%n", q, queues.get(q)));
        }
        return out.toString();
    }
}
