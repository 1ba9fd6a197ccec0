package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import sun.misc.Signal;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the stats filter counts and writes: exact counts and bytes, plausible percentiles, at close and on SIGUSR1. */
class TestStatsFilter
{
    private static final Pattern ROW = Pattern.compile("  (\\w+): (\\d+) ops, (\\d+) bytes, (\\d+\\.\\d\\d) MB/s(?:, (\\d+) errors)?"
            + "(?:, latency p50=(\\S+) p90=(\\S+) p99=(\\S+) p99\\.9=(\\S+) max=(\\S+))?");

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final Requests requests = new Requests();

    @Test
    void aKnownWorkloadIsCountedExactly()
            throws Exception
    {
        Path stats = dir.resolve("disk.stats");
        BackingFile file = wrap(new MemoryBackingFile(1 << 20), "disk.img", Map.of("stats-file", stats.toString()));
        for (int i = 0; i < 5; i++) {
            assertEquals(8192, requests.write(file, 8192L * i, new byte[8192], i == 0 ? Kiocb.IOCB_DSYNC : 0));
        }
        assertEquals(-28, requests.write(file, 1 << 20, new byte[512], 0), "past the end: ENOSPC");
        for (int i = 0; i < 7; i++) {
            assertEquals(4096, requests.read(file, 4096L * i, new byte[4096]));
        }
        assertEquals(0, requests.read(file, 1 << 20, new byte[4096]), "at the end: nothing");
        assertEquals(0, requests.flush(file, true));
        assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, 4096));
        assertEquals(0, requests.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 4096, 100));
        assertEquals(0, file.extents(0, 65536, (offset, length, type) -> true));
        Thread.sleep(20);
        file.close();
        requests.assertIdle();

        String text = Files.readString(stats);
        Report report = Report.parse(text);
        assertTrue(report.header.matches("disk\\.img: closed after \\d+\\.\\d{6} s"), text);
        assertTrue(report.seconds >= 0.02, text);
        assertEquals(List.of("total", "read", "write", "flush", "trim", "zero", "extents"), List.copyOf(report.rows.keySet()), text);
        assertRow(report, "total", 18, 7 * 4096 + 5 * 8192 + 4096 + 100 + 65536, 0);
        assertRow(report, "write", 6, 5 * 8192, 1);
        assertRow(report, "read", 8, 7 * 4096, 0);
        assertRow(report, "flush", 1, 0, 0);
        assertRow(report, "trim", 1, 4096, 0);
        assertRow(report, "zero", 1, 100, 0);
        assertRow(report, "extents", 1, 65536, 0);
        for (String name : List.of("read", "write", "flush", "trim", "zero", "extents")) {
            Row row = report.rows.get(name);
            assertTrue(row.p50 <= row.p90 && row.p90 <= row.p99 && row.p99 <= row.p999 && row.p999 <= row.max, name + " percentiles out of order: " + text);
            assertTrue(row.max < 10_000_000_000L, name + " took 10 s? " + text);
        }
        Row write = report.rows.get("write");
        double expected = write.bytes / 1e6 / report.seconds;
        assertEquals(expected, write.rate, Math.max(0.01, expected * 0.01), "MB/s over the time the file was open: " + text);
    }

    @Test
    void percentilesAreTheLatencyToTheCompletion()
            throws Exception
    {
        Path stats = dir.resolve("delayed.stats");
        MemoryBackingFile memory = MemoryBackingFile.builder(1 << 20).queued(2).build();
        BackingFile delayed = new DelayFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("delay-read", "20ms"));
        BackingFile file = wrap(delayed, "disk", Map.of("stats-file", stats.toString()));
        List<CompletableFuture<Long>> reads = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            reads.add(requests.submit(requests.aio.alloc().initRw(Kiocb.Op.READ, file,
                    KvecIter.of(IovIter.Direction.DEST, ByteBuffer.allocateDirect(4096)), 4096L * i, 0)));
        }
        for (CompletableFuture<Long> read : reads) {
            assertEquals(4096, read.get(30, TimeUnit.SECONDS));
        }
        assertEquals(0, requests.flush(file, false));
        file.close();
        String text = Files.readString(stats);
        Row read = Report.parse(text).rows.get("read");
        assertEquals(50, read.ops, text);
        assertTrue(read.p50 >= 20_000_000, "reads delayed 20 ms below stats: " + text);
        assertTrue(read.max < 20_000_000_000L, text);
    }

    @Test
    void sigusr1WritesEveryOpenFileAndCloseWritesTheFinalNumbers()
            throws Exception
    {
        Path first = dir.resolve("first.stats");
        Path shared = dir.resolve("shared.stats");
        BackingFile a = wrap(new MemoryBackingFile(1 << 20), "a.img", Map.of("stats-file", first.toString()));
        BackingFile b = wrap(new MemoryBackingFile(1 << 20), "b.img", Map.of("stats-file", shared.toString()));
        BackingFile c = wrap(new MemoryBackingFile(1 << 20), "c.img", Map.of("stats-file", shared.toString()));
        assertTrue(StatsReports.signalHandled(), "the first stats filter handles SIGUSR1");
        requests.write(a, 0, 4096, (byte) 1);
        requests.write(b, 0, 4096, (byte) 1);
        requests.write(b, 4096, 4096, (byte) 1);
        requests.flush(c, true);

        Signal.raise(new Signal("USR1"));
        String firstText = await(first, "a.img: open for");
        assertRow(Report.parse(firstText), "write", 1, 4096, 0);
        String sharedText = await(shared, "c.img: open for");
        assertTrue(sharedText.startsWith("b.img: open for"), "both files that share a stats file, in order: " + sharedText);
        assertTrue(sharedText.contains("  write: 2 ops, 8192 bytes") && sharedText.contains("  flush: 1 ops, 0 bytes"), sharedText);

        requests.write(a, 0, 4096, (byte) 2);
        a.close();
        assertRow(Report.parse(Files.readString(first)), "write", 2, 8192, 0);
        assertTrue(Files.readString(first).startsWith("a.img: closed after"), "replaced at close");
        b.close();
        sharedText = Files.readString(shared);
        assertTrue(sharedText.startsWith("b.img: closed after") && sharedText.contains("c.img: open for"), sharedText);
        c.close();
        sharedText = Files.readString(shared);
        assertTrue(sharedText.startsWith("b.img: closed after") && sharedText.contains("c.img: closed after"), "the last numbers of both: " + sharedText);
    }

    @Test
    void appendedOrToStandardError()
            throws Exception
    {
        Path stats = dir.resolve("appended.stats");
        Files.writeString(stats, "earlier\n");
        BackingFile file = wrap(new MemoryBackingFile(1 << 20), "disk.img", Map.of("stats-file", stats.toString(), "stats-append", "true"));
        requests.flush(file, false);
        StatsReports.reportAll();
        file.close();
        String text = Files.readString(stats);
        assertTrue(text.startsWith("earlier\ndisk.img: open for"), text);
        assertTrue(text.contains("\ndisk.img: closed after"), text);

        PrintStream stderr = System.err;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            file = wrap(new MemoryBackingFile(1 << 20), "quiet.img", Map.of());
            requests.write(file, 0, 512, (byte) 3);
            file.close();
        }
        finally {
            System.setErr(stderr);
        }
        String err = captured.toString(StandardCharsets.UTF_8);
        assertTrue(err.startsWith("quiet.img: closed after") && err.contains("  write: 1 ops, 512 bytes"), err);
    }

    @Test
    void concurrentRequestsAreAllCounted()
            throws Exception
    {
        Path stats = dir.resolve("concurrent.stats");
        BackingFile file = wrap(MemoryBackingFile.builder(4 << 20).queued(2).build(), "disk.img", Map.of("stats-file", stats.toString()));
        int threads = 4;
        int each = 2000;
        List<Thread> submitters = new ArrayList<>();
        List<CompletableFuture<Long>> all = Collections.synchronizedList(new ArrayList<>());
        for (int t = 0; t < threads; t++) {
            int thread = t;
            Thread submitter = new Thread(() -> {
                for (int i = 0; i < each; i++) {
                    long pos = 1024L * ((thread * each + i) % 4096);
                    all.add(requests.submit(requests.aio.alloc().initRw(i % 2 == 0 ? Kiocb.Op.WRITE : Kiocb.Op.READ, file,
                            KvecIter.of(i % 2 == 0 ? IovIter.Direction.SOURCE : IovIter.Direction.DEST,
                                    ByteBuffer.allocateDirect(1024)), pos, 0)));
                }
            });
            submitter.start();
            submitters.add(submitter);
        }
        for (Thread submitter : submitters) {
            submitter.join();
        }
        for (CompletableFuture<Long> request : all) {
            assertEquals(1024, request.get(30, TimeUnit.SECONDS));
        }
        file.close();
        Report report = Report.parse(Files.readString(stats));
        assertRow(report, "read", threads * each / 2, 1024L * threads * each / 2, 0);
        assertRow(report, "write", threads * each / 2, 1024L * threads * each / 2, 0);
    }

    private BackingFile wrap(BackingFile below, String name, Map<String, String> options)
            throws Exception
    {
        return new StatsFilterFactory().wrap(below, BackendConfig.of(dir.resolve(name)), options);
    }

    private static String await(Path path, String expected)
            throws Exception
    {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            String text = Files.exists(path) ? Files.readString(path) : "";
            if (text.contains(expected)) {
                return text;
            }
            Thread.sleep(10);
        }
        throw new AssertionError(path + " never showed '" + expected + "'");
    }

    private static void assertRow(Report report, String name, long ops, long bytes, long errors)
    {
        Row row = report.rows.get(name);
        assertTrue(row != null, "no " + name + " in " + report.rows.keySet());
        assertEquals(ops, row.ops, name + " ops");
        assertEquals(bytes, row.bytes, name + " bytes");
        assertEquals(errors, row.errors, name + " errors");
        assertFalse(row.rate < 0, name + " rate");
    }

    private record Row(long ops, long bytes, double rate, long errors, long p50, long p90, long p99, long p999, long max) {}

    /** The first section of a report. */
    private record Report(String header, double seconds, Map<String, Row> rows)
    {
        static Report parse(String text)
        {
            List<String> lines = text.lines().toList();
            String header = lines.get(0);
            Matcher seconds = Pattern.compile(".* (\\d+\\.\\d+) s").matcher(header);
            assertTrue(seconds.matches(), header);
            Map<String, Row> rows = new LinkedHashMap<>();
            for (String line : lines.subList(1, lines.size())) {
                if (!line.startsWith("  ")) {
                    break;
                }
                Matcher row = ROW.matcher(line);
                assertTrue(row.matches(), line);
                boolean latency = row.group(6) != null;
                rows.put(row.group(1), new Row(Long.parseLong(row.group(2)), Long.parseLong(row.group(3)), Double.parseDouble(row.group(4)),
                        row.group(5) == null ? 0 : Long.parseLong(row.group(5)),
                        latency ? nanos(row.group(6)) : 0, latency ? nanos(row.group(7)) : 0, latency ? nanos(row.group(8)) : 0,
                        latency ? nanos(row.group(9)) : 0, latency ? nanos(row.group(10)) : 0));
            }
            return new Report(header, Double.parseDouble(seconds.group(1)), rows);
        }
    }

    private static long nanos(String duration)
    {
        Matcher matcher = Pattern.compile("(\\d+(?:\\.\\d+)?)(us|ms|s)").matcher(duration);
        assertTrue(matcher.matches(), duration);
        double value = Double.parseDouble(matcher.group(1));
        Map<String, Double> units = new HashMap<>(Map.of("us", 1e3, "ms", 1e6, "s", 1e9));
        return Math.round(value * units.get(matcher.group(2)));
    }
}
