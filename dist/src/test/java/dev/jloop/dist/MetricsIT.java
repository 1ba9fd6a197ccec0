package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.jloop.dist.NbdTlsIT.randomBytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Prometheus endpoint and jloop status of a real server, under workloads whose requests are
 * known: qemu-io's commands one by one, and nbdcopy of a file of known size.
 */
class MetricsIT
{
    private static final Pattern METRICS = Pattern.compile("metrics (http://\\S+/metrics)");
    private static final String LABELS = "{backend=\"%s\",export=\"disk\",frontend=\"nbd\"";
    private static final String[] OPS = {"read", "write", "flush", "discard", "write_zeroes", "cache"};

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private Path dir;

    @BeforeEach
    void setUp()
            throws IOException
    {
        Path base = Path.of("target", "it-tmp").toAbsolutePath();
        Files.createDirectories(base);
        dir = Files.createTempDirectory(base, "metrics");
    }

    @AfterEach
    void tearDown()
    {
        Exec.run(30, "rm", "-rf", dir.toString());
    }

    /**
     * Each qemu-io command is one request (writes, reads, discards, write-zeroes, flushes), plus what
     * qemu-io sends by itself to open and close, measured by a run without commands; nbdcopy writes a
     * file of known size. Counters, bytes and histogram counts follow exactly, and jloop status shows
     * the same numbers.
     */
    @Test
    void countersFollowAKnownWorkloadExactly()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("nbdcopy");
        Path socket = dir.resolve("nbd.sock");
        Path control = dir.resolve("control.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "64M", "--metrics", "127.0.0.1:0",
                "--control", control.toString(), "--export", "disk", dir.resolve("disk.img").toString())) {
            String metrics = metricsUrl(server);
            String backend = backend(server);
            String labels = String.format(LABELS, backend);
            String uri = "nbd+unix:///disk?socket=" + socket;

            Map<String, Double> before = scrape(metrics);
            Exec.check(60, "qemu-io", "-f", "raw", "-d", "unmap", "-c", "quit", uri);
            Map<String, Double> opened = scrape(metrics);
            Map<String, Double> overhead = minus(opened, before);

            Exec.check(60, "qemu-io", "-f", "raw", "-d", "unmap",
                    "-c", "write -P 0x11 0 64k", "-c", "write -P 0x12 64k 64k", "-c", "write -P 0x13 1M 4k", "-c", "write -P 0x14 2M 1M",
                    "-c", "read -P 0x11 0 64k", "-c", "read -P 0x13 1M 4k", "-c", "read 8M 512",
                    "-c", "discard 16M 1M", "-c", "discard 20M 64k",
                    "-c", "write -z 24M 512k", "-c", "write -z 32M 4k",
                    "-c", "flush", "-c", "flush", "-c", "flush",
                    uri);
            Map<String, Double> after = scrape(metrics);
            Map<String, Double> workload = minus(minus(after, opened), overhead);
            assertEquals(4, value(workload, "jloop_writes_completed_total" + labels + "}"), "writes");
            assertEquals(64 * 1024 * 2 + 4096 + (1 << 20), value(workload, "jloop_written_bytes_total" + labels + "}"), "written bytes");
            assertEquals(3, value(workload, "jloop_reads_completed_total" + labels + "}"), "reads");
            assertEquals(64 * 1024 + 4096 + 512, value(workload, "jloop_read_bytes_total" + labels + "}"), "read bytes");
            assertEquals(2, value(workload, "jloop_discards_completed_total" + labels + "}"), "discards");
            assertEquals((1 << 20) + 64 * 1024, value(workload, "jloop_discarded_bytes_total" + labels + "}"), "discarded bytes");
            assertEquals(2, value(workload, "jloop_zeroes_completed_total" + labels + "}"), "write-zeroes");
            assertEquals(512 * 1024 + 4096, value(workload, "jloop_zeroed_bytes_total" + labels + "}"), "zeroed bytes");
            assertEquals(3, value(workload, "jloop_flush_requests_total" + labels + "}"), "flushes");
            assertNull(after.keySet().stream().filter(key -> key.startsWith("jloop_errors_total")).findAny().orElse(null), "no errors: " + after);
            assertHistogramsCountEveryRequest(after, labels);

            // nbdcopy: how it splits the file is its business, the bytes are not
            byte[] content = randomBytes(8 << 20, 14);
            Path in = dir.resolve("in.raw");
            Files.write(in, content);
            Exec.check(120, "nbdcopy", in.toString(), uri);
            Map<String, Double> copied = scrape(metrics);
            assertEquals(8 << 20, value(minus(copied, after), "jloop_written_bytes_total" + labels + "}"), "nbdcopy's bytes");
            assertHistogramsCountEveryRequest(copied, labels);
            Path out = dir.resolve("out.raw");
            Exec.check(120, "nbdcopy", uri, out.toString());
            assertArrayEquals(content, Arrays.copyOf(Files.readAllBytes(out), content.length));
            Map<String, Double> end = scrape(metrics);
            // nbdcopy reads the data extents only (block status): at least the file it wrote
            double read = value(minus(end, copied), "jloop_read_bytes_total" + labels + "}");
            assertTrue(read >= 8 << 20 && read <= 64 << 20, "nbdcopy's reads: " + read);
            assertEquals(0, value(end, "jloop_inflight_requests" + labels + "}"));
            assertEquals(0, value(end, "jloop_page_pool_in_use_bytes{frontend=\"nbd\"}"));
            assertHistogramsCountEveryRequest(end, labels);
            assertTrue(end.containsKey("jvm_memory_used_bytes{area=\"heap\"}"), "the JVM's metrics are there too");

            // jloop status: the same totals, from the control socket
            Exec status = Exec.run(60, JloopProcess.command("status", "--control", control.toString()).toArray(String[]::new));
            assertEquals(0, status.exitCode(), status.stderr());
            Map<String, Double> latest = scrape(metrics);
            for (String op : OPS) {
                Matcher row = Pattern.compile("(?m)^  " + op + " +(\\d+) +(\\d+) ").matcher(status.stdout());
                assertTrue(row.find(), op + " in " + status.stdout());
                String series = op.equals("flush") ? "jloop_flush_requests_total" : op.equals("cache") ? "jloop_cache_requests_total"
                        : "jloop_request_duration_seconds_count";
                String key = series.endsWith("_count") ? series + labels + ",op=\"" + op + "\"}" : series + labels + "}";
                assertEquals((long) value(latest, key), Long.parseLong(row.group(1)), op + " requests in " + status.stdout());
            }
            assertTrue(status.stdout().contains("export 'disk': " + dir.resolve("disk.img") + ", backend " + backend), status.stdout());

            // the log: one line per connection at open and at close, with what it served
            String log = server.log();
            assertTrue(log.contains("open, export 'disk', unix, TLS off"), log);
            Matcher closed = Pattern.compile("closed after \\S+ s, export 'disk', (\\d+) requests, (\\d+) bytes, (\\d+) errors").matcher(log);
            long bytes = 0;
            int connections = 0;
            while (closed.find()) {
                connections++;
                bytes += Long.parseLong(closed.group(2));
                assertEquals("0", closed.group(3));
            }
            assertTrue(connections >= 3, log);
            assertEquals((long) (value(latest, "jloop_read_bytes_total" + labels + "}") + value(latest, "jloop_written_bytes_total" + labels + "}")), bytes,
                    "the connections' bytes add up to the device's reads and writes: " + log);

            // a client that stays connected (qemu-io waiting for commands) is listed with its export and transport
            Process held = new ProcessBuilder("qemu-io", "-f", "raw", uri).redirectErrorStream(true).start();
            try {
                String listed = "";
                for (int i = 0; i < 100 && !listed.contains("connections: 1"); i++) {
                    Thread.sleep(100);
                    listed = Exec.check(60, JloopProcess.command("status", "--control", control.toString()).toArray(String[]::new));
                }
                assertTrue(Pattern.compile("(?m)^  unix:\\S+ +export 'disk', unix, TLS off, in flight 0, \\d+ requests").matcher(listed).find(), listed);
                assertEquals(1.0, value(scrape(metrics), "jloop_connections{frontend=\"nbd\",tls=\"false\",transport=\"unix\"}"));
            }
            finally {
                held.getOutputStream().close();
                held.waitFor();
            }
            assertEquals(0, server.stop(), server.log());
        }
    }

    /** GET and HEAD only; a flood of scrapes while nbdcopy copies in and out changes nothing in the data and fails no scrape. */
    @Test
    void refusesOtherMethodsAndSurvivesAFloodOfScrapes()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "32M", "--metrics", "127.0.0.1:0",
                "--control", "none", "--export", "disk", dir.resolve("disk.img").toString())) {
            String metrics = metricsUrl(server);
            String labels = String.format(LABELS, backend(server));
            for (String method : List.of("POST", "PUT", "DELETE", "PATCH")) {
                HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create(metrics)).method(method, HttpRequest.BodyPublishers.ofString("x")).build(),
                        HttpResponse.BodyHandlers.ofString());
                assertEquals(405, response.statusCode(), method);
                assertEquals("GET, HEAD", response.headers().firstValue("Allow").orElse(null), method);
            }
            HttpResponse<String> head = http.send(HttpRequest.newBuilder(URI.create(metrics)).method("HEAD", HttpRequest.BodyPublishers.noBody()).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, head.statusCode());
            HttpResponse<String> openMetrics = http.send(HttpRequest.newBuilder(URI.create(metrics)).header("Accept", "application/openmetrics-text; version=1.0.0").build(),
                    HttpResponse.BodyHandlers.ofString());
            assertTrue(openMetrics.headers().firstValue("Content-Type").orElse("").startsWith("application/openmetrics-text"), openMetrics.headers().toString());
            assertTrue(openMetrics.body().endsWith("# EOF\n"), "OpenMetrics ends with # EOF");

            byte[] content = randomBytes(16 << 20, 41);
            Path in = dir.resolve("in.raw");
            Files.write(in, content);
            String uri = "nbd+unix:///disk?socket=" + socket;
            AtomicBoolean copying = new AtomicBoolean(true);
            AtomicInteger scrapes = new AtomicInteger();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> scrapers = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                Thread thread = new Thread(() -> {
                    double last = 0;
                    try {
                        while (copying.get()) {
                            double written = value(scrape(metrics), "jloop_written_bytes_total" + labels + "}");
                            assertTrue(written >= last, "a counter went back: " + written + " after " + last);
                            last = written;
                            scrapes.incrementAndGet();
                        }
                    }
                    catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                });
                thread.start();
                scrapers.add(thread);
            }
            try {
                for (int round = 0; round < 2; round++) {
                    Exec.check(120, "nbdcopy", in.toString(), uri);
                    Path out = dir.resolve("out" + round + ".raw");
                    Exec.check(120, "nbdcopy", uri, out.toString());
                    assertArrayEquals(content, Arrays.copyOf(Files.readAllBytes(out), content.length));
                }
            }
            finally {
                copying.set(false);
                for (Thread thread : scrapers) {
                    thread.join();
                }
            }
            assertNull(failure.get(), () -> "a scrape failed: " + failure.get());
            assertTrue(scrapes.get() > 10, "scrapes during the copies: " + scrapes.get());
            Map<String, Double> end = scrape(metrics);
            assertEquals(2 * (16 << 20), value(end, "jloop_written_bytes_total" + labels + "}"));
            assertHistogramsCountEveryRequest(end, labels);
            assertEquals(0, server.stop(), server.log());
        }
    }

    private static void assertHistogramsCountEveryRequest(Map<String, Double> scrape, String labels)
    {
        Map<String, String> counters = Map.of("read", "jloop_reads_completed_total", "write", "jloop_writes_completed_total",
                "flush", "jloop_flush_requests_total", "discard", "jloop_discards_completed_total", "write_zeroes", "jloop_zeroes_completed_total",
                "cache", "jloop_cache_requests_total");
        for (String op : OPS) {
            String opLabels = labels + ",op=\"" + op + "\"";
            double count = value(scrape, "jloop_request_duration_seconds_count" + opLabels + "}");
            assertEquals(value(scrape, counters.get(op) + labels + "}"), count, op + ": one latency per request");
            assertEquals(count, value(scrape, "jloop_request_duration_seconds_bucket" + opLabels + ",le=\"+Inf\"}"), op);
            double previous = 0;
            for (Map.Entry<String, Double> bucket : scrape.entrySet().stream()
                    .filter(entry -> entry.getKey().startsWith("jloop_request_duration_seconds_bucket" + opLabels + ",le="))
                    .sorted(Map.Entry.comparingByKey((a, b) -> Double.compare(le(a), le(b))))
                    .toList()) {
                assertTrue(bucket.getValue() >= previous, "cumulative buckets: " + bucket);
                previous = bucket.getValue();
            }
        }
    }

    private static double le(String series)
    {
        String bound = series.substring(series.indexOf("le=\"") + 4, series.lastIndexOf('"'));
        return bound.equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(bound);
    }

    private static String metricsUrl(JloopProcess server)
    {
        Matcher matcher = METRICS.matcher(server.startLine());
        assertTrue(matcher.find(), server.startLine());
        assertTrue(matcher.group(1).startsWith("http://127.0.0.1:"), "loopback: " + server.startLine());
        return matcher.group(1);
    }

    private static String backend(JloopProcess server)
    {
        Matcher matcher = Pattern.compile("backend (\\S+?)[, ]").matcher(server.startLine());
        assertTrue(matcher.find(), server.startLine());
        return matcher.group(1);
    }

    /** Every series of a scrape in Prometheus' text format, by name and labels. */
    private Map<String, Double> scrape(String metrics)
            throws IOException, InterruptedException
    {
        HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create(metrics)).timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), response.body());
        Map<String, Double> series = new HashMap<>();
        for (String line : response.body().split("\n")) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            int space = line.lastIndexOf(' ');
            series.put(line.substring(0, space), Double.parseDouble(line.substring(space + 1)));
        }
        return series;
    }

    private static double value(Map<String, Double> scrape, String series)
    {
        Double value = scrape.get(series);
        assertTrue(value != null, () -> series + " not in " + new java.util.TreeMap<>(scrape).keySet());
        return value;
    }

    private static Map<String, Double> minus(Map<String, Double> later, Map<String, Double> earlier)
    {
        Map<String, Double> difference = new HashMap<>();
        later.forEach((key, value) -> difference.put(key, value - earlier.getOrDefault(key, 0.0)));
        return difference;
    }
}
