package dev.jloop.metrics;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.Bio;
import dev.jloop.api.ConnectionStatus;
import dev.jloop.api.Errno;
import dev.jloop.api.FrontendStatus;
import dev.jloop.loop.LoopDevice;
import dev.jloop.loop.stats.ExportStats;
import dev.jloop.loop.stats.LatencyHistogram;
import dev.jloop.loop.stats.ServerStats;
import dev.jloop.testkit.MemoryBackingFile;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import org.junit.jupiter.api.Test;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestMetricsEndpoint
{
    @Test
    void prometheusBucketsAddUpTheFineOnesExactly()
    {
        LatencyHistogram histogram = new LatencyHistogram();
        long[] values = {0, 1, 1023, 1024, 1025, 2047, 2048, 100_000, 1_000_000_000L, 1L << 35, (1L << 35) + 1, Long.MAX_VALUE};
        for (long value : values) {
            histogram.record(value);
        }
        ClassicHistogramBuckets buckets = JloopCollector.buckets(histogram.snapshot());
        long cumulative = 0;
        for (int i = 0; i < buckets.size(); i++) {
            cumulative += buckets.getCount(i);
            double bound = buckets.getUpperBound(i);
            // Prometheus' le is inclusive, the histogram's bounds exclusive: no value lies on a power of two's edge by more than a nanosecond
            long expected = 0;
            for (long value : values) {
                if (value < bound * 1e9 || Double.isInfinite(bound)) {
                    expected++;
                }
            }
            assertEquals(expected, cumulative, "le=" + bound);
        }
        assertEquals(values.length, cumulative);
    }

    @Test
    void servesTheDeviceCountersAndRefusesOtherMethods()
            throws Exception
    {
        LoopDevice device = new LoopDevice(new MemoryBackingFile(1 << 20), new AioKernel(), "test");
        try {
            submit(device, Bio.Op.FLUSH, 0, 0);
            submit(device, Bio.Op.DISCARD, 0, 8192);
            assertEquals(-Errno.EINVAL, submit(device, Bio.Op.WRITE_ZEROES, 1 << 20, 4096));
            ServerStats stats = new ServerStats()
            {
                @Override
                public List<ExportStats> exports()
                {
                    return List.of(new ExportStats("a", "a.img", "memory", "nbd", device));
                }

                @Override
                public FrontendStatus frontend()
                {
                    return new FrontendStatus(List.of(new ConnectionStatus("127.0.0.1:1", "a", "tcp", true, 2, 3, 4, 0),
                            new ConnectionStatus("unix:/x", "a", "unix", false, 0, 0, 0, 0)), 4096, 8192, List.of(3, 1));
                }
            };
            try (MetricsEndpoint endpoint = MetricsEndpoint.start(new InetSocketAddress("127.0.0.1", 0), stats)) {
                HttpClient http = HttpClient.newHttpClient();
                String body = http.send(HttpRequest.newBuilder(URI.create(endpoint.url())).build(), HttpResponse.BodyHandlers.ofString()).body();
                String labels = "backend=\"memory\",export=\"a\",frontend=\"nbd\"";
                assertTrue(body.contains("jloop_flush_requests_total{" + labels + "} 1.0\n"), body);
                assertTrue(body.contains("jloop_discards_completed_total{" + labels + "} 1.0\n"), body);
                assertTrue(body.contains("jloop_discarded_bytes_total{" + labels + "} 8192.0\n"), body);
                assertTrue(body.contains("jloop_zeroes_completed_total{" + labels + "} 1.0\n"), body);
                assertTrue(body.contains("jloop_zeroed_bytes_total{" + labels + "} 0.0\n"), body);
                assertTrue(body.contains("jloop_errors_total{backend=\"memory\",errno=\"EINVAL\",export=\"a\",frontend=\"nbd\",op=\"write_zeroes\"} 1.0\n"), body);
                assertTrue(body.contains("jloop_request_duration_seconds_count{" + labels + ",op=\"discard\"} 1\n"), body);
                assertTrue(body.contains("jloop_request_duration_seconds_bucket{" + labels + ",op=\"read\",le=\"+Inf\"} 0\n"), body);
                assertTrue(body.contains("jloop_inflight_requests{" + labels + "} 0.0\n"), body);
                assertTrue(body.contains("jloop_connections{frontend=\"nbd\",tls=\"true\",transport=\"tcp\"} 1.0\n"), body);
                assertTrue(body.contains("jloop_connections{frontend=\"nbd\",tls=\"false\",transport=\"unix\"} 1.0\n"), body);
                assertTrue(body.contains("jloop_ublk_queue_depth{frontend=\"nbd\",queue=\"0\"} 3.0\n"), body);
                assertTrue(body.contains("jloop_page_pool_in_use_bytes{frontend=\"nbd\"} 4096.0\n"), body);
                assertTrue(body.contains("jloop_page_pool_idle_bytes{frontend=\"nbd\"} 8192.0\n"), body);
                assertTrue(body.contains("jvm_threads_current"), body);

                HttpResponse<String> post = http.send(HttpRequest.newBuilder(URI.create(endpoint.url())).POST(HttpRequest.BodyPublishers.ofString("x")).build(),
                        HttpResponse.BodyHandlers.ofString());
                assertEquals(405, post.statusCode());
                assertEquals(404, http.send(HttpRequest.newBuilder(URI.create(endpoint.url().replace("/metrics", "/other"))).build(),
                        HttpResponse.BodyHandlers.ofString()).statusCode());
            }
        }
        finally {
            device.close();
        }
    }

    private static int submit(LoopDevice device, Bio.Op op, long offset, long length)
            throws Exception
    {
        CompletableFuture<Integer> done = new CompletableFuture<>();
        device.submit(new Bio().init(op, offset, length, 0, null).setEndIo((bio, error) -> done.complete(error), null));
        return done.get(30, TimeUnit.SECONDS);
    }
}
