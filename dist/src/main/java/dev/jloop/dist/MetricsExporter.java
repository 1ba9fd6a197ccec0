package dev.jloop.dist;

import dev.jloop.loop.stats.ServerStats;

import java.io.Closeable;
import java.io.IOException;

/**
 * Something that shows a running server's numbers outside it, started once the exports are served
 * and closed before them: the Prometheus endpoint of {@code --metrics}, bound by
 * {@link PrometheusModule} only when that option is given.
 */
interface MetricsExporter
{
    /** Starts showing {@code stats}; the result tells where (for the start line) and stops it. */
    Running start(ServerStats stats)
            throws IOException;

    interface Running
            extends Closeable
    {
        /** Where it can be read, e.g. {@code http://127.0.0.1:9100/metrics}. */
        String where();
    }
}
