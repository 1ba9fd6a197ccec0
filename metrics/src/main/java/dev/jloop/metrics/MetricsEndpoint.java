package dev.jloop.metrics;

import dev.jloop.loop.stats.ServerStats;
import com.sun.net.httpserver.Filter;
import com.sun.net.httpserver.HttpContext;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.prometheus.metrics.exporter.httpserver.MetricsHandler;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static java.util.Objects.requireNonNull;

/**
 * The Prometheus endpoint of {@code --metrics HOST:PORT}: {@code /metrics} in Prometheus' text format,
 * or OpenMetrics when the scraper asks for it, written by the Prometheus client's own
 * {@link MetricsHandler}. Served by the JDK's HTTP server on one thread (scrapes are rare and
 * quick; a flood of them waits in line instead of taking cores from the request path). Only GET and
 * HEAD are answered; any other method gets 405, as nothing here can be changed.
 *
 * <p>Why not on a Unix socket ({@code --metrics-socket}): the JDK's HTTP server, which the Prometheus
 * client's exporter is built on, binds only TCP addresses. The local, permission-checked way in is
 * the control socket ({@code jloop status}).
 */
public final class MetricsEndpoint
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(MetricsEndpoint.class);
    private static final AtomicInteger THREADS = new AtomicInteger();

    private final HttpServer server;
    private final ExecutorService executor;
    private final String url;

    private MetricsEndpoint(HttpServer server, ExecutorService executor, String url)
    {
        this.server = server;
        this.executor = executor;
        this.url = url;
    }

    /**
     * Serves the metrics of {@code stats} on {@code address} (port 0: a free one), and the JVM's.
     *
     * @throws IOException when the address cannot be bound
     */
    public static MetricsEndpoint start(InetSocketAddress address, ServerStats stats)
            throws IOException
    {
        requireNonNull(address, "address is null");
        PrometheusRegistry registry = new PrometheusRegistry();
        registry.register(new JloopCollector(stats));
        JvmMetrics.builder().register(registry);

        HttpServer server = HttpServer.create(address, 16);
        ExecutorService executor = new ThreadPoolExecutor(1, 1, 0, TimeUnit.SECONDS, new LinkedBlockingQueue<>(), runnable -> {
            Thread thread = new Thread(runnable, "jloop-metrics-" + THREADS.getAndIncrement());
            thread.setDaemon(true);
            return thread;
        });
        server.setExecutor(executor);
        HttpContext context = server.createContext("/metrics", new MetricsHandler(registry));
        context.getFilters().add(new ReadOnly());
        server.start();
        InetSocketAddress bound = server.getAddress();
        InetAddress host = bound.getAddress();
        String hostText = host.isAnyLocalAddress() ? "0.0.0.0" : host.getHostAddress().contains(":") ? "[" + host.getHostAddress() + "]" : host.getHostAddress();
        String url = "http://" + hostText + ":" + bound.getPort() + "/metrics";
        log.info("metrics on {}", url);
        return new MetricsEndpoint(server, executor, url);
    }

    /** Where Prometheus scrapes, e.g. {@code http://127.0.0.1:9100/metrics}. */
    public String url()
    {
        return url;
    }

    @Override
    public void close()
    {
        server.stop(0);
        executor.shutdownNow();
    }

    /** 405 for anything but GET and HEAD. */
    private static final class ReadOnly
            extends Filter
    {
        @Override
        public void doFilter(HttpExchange exchange, Chain chain)
                throws IOException
        {
            String method = exchange.getRequestMethod();
            if (method.equals("GET") || method.equals("HEAD")) {
                chain.doFilter(exchange);
                return;
            }
            try (exchange) {
                exchange.getResponseHeaders().set("Allow", "GET, HEAD");
                exchange.sendResponseHeaders(405, -1);
            }
        }

        @Override
        public String description()
        {
            return "GET and HEAD only";
        }
    }
}
