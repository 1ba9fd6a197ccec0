package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Fallocate;
import dev.jloop.api.Kiocb;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.StringWriter;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the log filter writes: a line per request with its fields, written by its own thread, and never a wait for the disk in a completion. */
class TestLogFilter
{
    private static final Pattern LINE = Pattern.compile("(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{6}) (.*?)(?: latency=(\\d+)us)?");
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSSSSS");

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final Requests requests = new Requests();

    @Test
    void aKnownWorkloadGivesExactlyItsLines()
            throws Exception
    {
        Path log = dir.resolve("requests.log");
        Files.writeString(log, "an earlier line\n");
        Instant before = Instant.now().minusMillis(1);
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        BackingFile file = new LogFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk one.img")), Map.of("log-file", log.toString()));
        for (int i = 0; i < 4; i++) {
            assertEquals(8192, requests.write(file, 8192L * i, new byte[8192], i == 2 ? Kiocb.IOCB_DSYNC : 0));
        }
        for (int i = 0; i < 3; i++) {
            assertEquals(4096, requests.read(file, 4096L * i, new byte[4096]));
        }
        assertEquals(-28, requests.write(file, 1 << 20, new byte[512], 0), "past the end: ENOSPC");
        assertEquals(0, requests.flush(file, true));
        assertEquals(0, requests.fallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 0, 4096));
        assertEquals(0, requests.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 4096, 100));
        assertEquals(0, file.extents(0, 16384, (offset, length, type) -> true));
        file.close();
        Instant after = Instant.now().plusMillis(1);
        requests.assertIdle();
        assertTrue(memory.isClosed(), "the log filter closes the file below");

        List<String> lines = Files.readAllLines(log);
        assertEquals("an earlier line", lines.get(0), "the log is appended to");
        List<String> fields = new ArrayList<>();
        for (String line : lines.subList(1, lines.size())) {
            Matcher matcher = LINE.matcher(line);
            assertTrue(matcher.matches(), line);
            Instant time = LocalDateTime.parse(matcher.group(1), TIME).toInstant(ZoneOffset.UTC);
            assertFalse(time.isBefore(before) || time.isAfter(after), "time " + time + " (UTC) outside the test's " + before + " to " + after);
            fields.add(matcher.group(2));
        }
        assertEquals(List.of(
                "file='disk one.img' Open size=1048576 read-only=0 flush=1 fua=1 trim=1 zero=1 extents=1 cache=0",
                "file='disk one.img' Write id=1 offset=0 count=8192 fua=0 result=8192",
                "file='disk one.img' Write id=2 offset=8192 count=8192 fua=0 result=8192",
                "file='disk one.img' Write id=3 offset=16384 count=8192 fua=1 result=8192",
                "file='disk one.img' Write id=4 offset=24576 count=8192 fua=0 result=8192",
                "file='disk one.img' Read id=5 offset=0 count=4096 fua=0 result=4096",
                "file='disk one.img' Read id=6 offset=4096 count=4096 fua=0 result=4096",
                "file='disk one.img' Read id=7 offset=8192 count=4096 fua=0 result=4096",
                "file='disk one.img' Write id=8 offset=1048576 count=512 fua=0 result=ENOSPC",
                "file='disk one.img' Flush id=9 datasync=1 result=0",
                "file='disk one.img' Trim id=10 offset=0 count=4096 mode=punch_hole,keep_size result=0",
                "file='disk one.img' Zero id=11 offset=4096 count=100 mode=zero_range,keep_size result=0",
                "file='disk one.img' Extents id=12 offset=0 count=16384 extents=2 result=0",
                "file='disk one.img' Close requests=12"), fields);
    }

    @Test
    void latencyRunsToTheCompletionNotToTheReturn()
            throws Exception
    {
        Path log = dir.resolve("latency.log");
        MemoryBackingFile memory = MemoryBackingFile.builder(1 << 20).queued(2).build();
        BackingFile delayed = new DelayFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("delay-write", "50ms"));
        BackingFile file = new LogFilterFactory().wrap(delayed, BackendConfig.of(dir.resolve("disk")), Map.of("log-file", log.toString()));
        assertEquals(4096, requests.write(file, 0, 4096, (byte) 1));
        assertEquals(4096, requests.read(file, 0, new byte[4096]));
        file.close();
        List<String> lines = Files.readAllLines(log);
        assertEquals(4, lines.size(), lines.toString());
        long write = latency(lines.get(1), "Write");
        assertTrue(write >= 50_000, "a write delayed 50 ms below the log logged " + write + " us");
        latency(lines.get(2), "Read");
    }

    @Test
    void exportsLoggingToOneFileShareItsWriterAndNeverInterleaveLines()
            throws Exception
    {
        Path log = dir.resolve("shared.log");
        BackingFile a = new LogFilterFactory().wrap(MemoryBackingFile.builder(1 << 20).queued(2).build(), BackendConfig.of(dir.resolve("a.img")),
                Map.of("log-file", log.toString()));
        BackingFile b = new LogFilterFactory().wrap(MemoryBackingFile.builder(1 << 20).queued(2).build(), BackendConfig.of(dir.resolve("b.img")),
                Map.of("log-file", dir.resolve(".").resolve("shared.log").toString()));
        int each = 2000;
        List<CompletableFuture<Long>> all = new ArrayList<>();
        for (int i = 0; i < each; i++) {
            for (BackingFile file : List.of(a, b)) {
                all.add(requests.submit(requests.aio.alloc().initFsync(file, i % 2 == 0)));
            }
        }
        for (CompletableFuture<Long> request : all) {
            assertEquals(0, request.get(30, TimeUnit.SECONDS));
        }
        a.close();
        b.close();
        List<String> lines = Files.readAllLines(log);
        Pattern flush = Pattern.compile(LINE.pattern().replace("(.*?)", "file=([ab])\\.img Flush id=(\\d+) datasync=([01]) result=0"));
        int[] flushes = new int[2];
        for (String line : lines) {
            Matcher matcher = flush.matcher(line);
            if (matcher.matches()) {
                flushes[matcher.group(2).charAt(0) - 'a']++;
            }
            else {
                assertTrue(line.matches(".* file=[ab]\\.img (Open|Close) .*"), "a whole line: " + line);
            }
        }
        assertEquals(each, flushes[0], "flushes of a.img");
        assertEquals(each, flushes[1], "flushes of b.img");
        assertEquals(2 * each + 4, lines.size());
    }

    @Test
    void aFullQueueDropsAndCountsLinesInsteadOfWaiting()
            throws Exception
    {
        CountDownLatch diskIsBack = new CountDownLatch(1);
        StringWriter written = new StringWriter();
        Writer slowDisk = new Writer()
        {
            @Override
            public void write(char[] buffer, int offset, int length)
                    throws IOException
            {
                try {
                    diskIsBack.await();
                }
                catch (InterruptedException e) {
                    throw new IOException(e);
                }
                written.write(buffer, offset, length);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        LogWriter writer = new LogWriter("test", null, slowDisk, 10);
        long start = System.nanoTime();
        List<String> accepted = new ArrayList<>();
        for (int i = 0; i < 1000; i++) {
            String line = "line " + i;
            if (writer.offer(out -> out.append(line))) {
                accepted.add(line);
            }
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis < 5000, "1000 offers to a stuck writer took " + millis + " ms");
        // the writer holds at most one line while it waits for the disk
        assertTrue(accepted.size() >= 10 && accepted.size() <= 11, accepted.size() + " lines accepted by a queue of 10");
        int dropped = 1000 - accepted.size();
        assertEquals(dropped, writer.dropped());
        diskIsBack.countDown();
        writer.release();
        List<String> lines = written.toString().lines().toList();
        assertEquals(accepted, lines.subList(0, lines.size() - 1), "the lines accepted, in order");
        assertTrue(lines.get(lines.size() - 1).endsWith(" Dropped lines=" + dropped), lines.toString());
    }

    @Test
    void theLogFileIsRequired()
    {
        assertEquals("the log filter needs --log-file, the file it logs to (e.g. --filter log:log-file=/tmp/disk.log)",
                assertThrows(IllegalArgumentException.class, () -> new LogFilterFactory().validate(Map.of())).getMessage());
        assertThrows(IOException.class, () -> new LogFilterFactory().wrap(new MemoryBackingFile(4096), BackendConfig.of(dir.resolve("disk")),
                Map.of("log-file", dir.resolve("missing/dir/log").toString())));
    }

    private static long latency(String line, String operation)
    {
        Matcher matcher = LINE.matcher(line);
        assertTrue(matcher.matches() && matcher.group(2).contains(" " + operation + " "), line);
        return Long.parseLong(matcher.group(3));
    }
}
