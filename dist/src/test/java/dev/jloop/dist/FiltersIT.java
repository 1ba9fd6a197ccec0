package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Filters as a user stacks them, seen by clients nobody here wrote (qemu-io, nbdcopy, nbdinfo). */
class FiltersIT
        extends AbstractJloopIT
{
    /** qemu-io sees the injected errno while the trigger file exists, and the server keeps serving. */
    @Test
    void errorFilterInjectsTheChosenErrnoWhileItsFileExists()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("nbdcopy");
        Path image = dir.resolve("disk.img");
        Path trigger = dir.resolve("fail-now");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "4M",
                "--filter", "error:error=ENOSPC,error-ops=write", "--error-file", trigger.toString(), image.toString())) {
            assertTrue(server.startLine().contains("filters error"), server.startLine());
            String uri = server.uri();
            Exec ok = Exec.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", uri);
            assertEquals(0, ok.exitCode(), ok.stdout() + ok.stderr());

            Files.createFile(trigger);
            Exec failed = Exec.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 64k", uri);
            assertTrue((failed.stdout() + failed.stderr()).contains("No space left on device"), failed.stdout() + failed.stderr());
            Exec read = Exec.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x11 0 64k", uri);
            assertEquals(0, read.exitCode(), "reads pass, and the failed write changed nothing: " + read.stdout() + read.stderr());
            assertTrue(read.stdout().contains("read 65536/65536"), read.stdout());

            Files.delete(trigger);
            byte[] content = randomBytes(1 << 20, 3);
            Path in = dir.resolve("in.raw");
            Files.write(in, content);
            Exec.check(120, "nbdcopy", in.toString(), uri);
            Path out = dir.resolve("out.raw");
            Exec.check(120, "nbdcopy", uri, out.toString());
            assertArrayEquals(content, Arrays.copyOf(Files.readAllBytes(out), content.length), "the server serves on after errors");
            assertEquals(0, server.stop(), server.log());
        }
    }

    /** A delayed read takes at least the delay, seen from qemu-io; writes are not delayed. */
    @Test
    void delayFilterDelaysTheChosenOperation()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "4M",
                "--filter", "delay:delay-read=500ms", image.toString())) {
            long start = System.nanoTime();
            Exec.check(60, "qemu-io", "-f", "raw", "-c", "read 0 4k", "-c", "read 4k 4k", server.uri());
            long millis = (System.nanoTime() - start) / 1_000_000;
            assertTrue(millis >= 1000, "two reads delayed 500 ms each took " + millis + " ms");
            assertEquals(0, server.stop(), server.log());
        }
    }

    /** A copy over four connections shares the export's one limit: 16M bits/s is 2 MiB/s, 8 MiB take 3 s after the default 1 s burst. */
    @Test
    void rateFilterLimitsACopyOverSeveralConnections()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path source = dir.resolve("source.img");
        byte[] content = randomBytes(8 << 20, 11);
        Files.write(source, content);
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "8M", "--filter", "rate:rate=16M", image.toString())) {
            assertTrue(server.startLine().contains("filters rate"), server.startLine());
            long start = System.nanoTime();
            Exec.check(120, "nbdcopy", "--connections=4", source.toString(), server.uri());
            long millis = (System.nanoTime() - start) / 1_000_000;
            assertTrue(millis >= 2700 && millis < 12_000, "8 MiB at 2 MiB/s over 4 connections took " + millis + " ms, expected about 3000");
            assertEquals(0, server.stop(), server.log());
        }
        assertArrayEquals(content, Files.readAllBytes(image));
    }

    /** With retry in front of an error filter failing half the requests, a copy in and out is whole. */
    @Test
    void retryFilterHidesAnErrorFilterBelowIt()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "4M",
                "--filter", "retry:retries=40,retry-delay=1ms,retry-exponential=no", "--filter", "error:error-rate=50%,error-ops=read,,write", image.toString())) {
            assertTrue(server.startLine().contains("filters retry, error"), server.startLine());
            byte[] content = randomBytes(4 << 20, 12);
            Path in = dir.resolve("in.raw");
            Files.write(in, content);
            Exec.check(120, "nbdcopy", in.toString(), server.uri());
            Path out = dir.resolve("out.raw");
            Exec.check(120, "nbdcopy", server.uri(), out.toString());
            assertArrayEquals(content, Files.readAllBytes(out));
            assertEquals(0, server.stop(), server.log());
        }
    }

    /** Unaligned writes and reads from qemu-io, read-modify-written by the filter in 4 KiB blocks over O_DIRECT. */
    @Test
    void blocksizeFilterTakesUnalignedRequests()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "4M", "--direct",
                "--filter", "blocksize:minblock=4K,maxdata=64K", image.toString())) {
            Exec.check(60, "qemu-io", "-f", "raw", "-c", "write -P 0x33 1000 300000", "-c", "write -P 0x44 5000 10", server.uri());
            Exec read = Exec.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x33 1000 4000", "-c", "read -P 0x44 5000 10",
                    "-c", "read -P 0x33 5010 295990", "-c", "read -P 0 0 1000", server.uri());
            assertEquals(0, read.exitCode(), read.stdout() + read.stderr());
            assertFalse(read.stdout().contains("Pattern verification failed"), read.stdout());
            assertEquals(0, server.stop(), server.log());
        }
        byte[] written = Files.readAllBytes(image);
        assertEquals(0x33, written[1000]);
        assertEquals(0x44, written[5009]);
        assertEquals(0x33, written[300_999]);
        assertEquals(0, written[301_000]);
    }

    @Test
    void filterMistakesAreOneLineErrors()
    {
        Path image = dir.resolve("a.img");
        assertOneLineError(jloop("serve", "--filter", "nope", "--size", "1M", image.toString()),
                "unknown filter 'nope'; known filters: ");
        assertOneLineError(jloop("serve", "--filter", "error:error=EWHAT", "--size", "1M", image.toString()),
                "--error: unknown errno 'EWHAT'");
        assertOneLineError(jloop("serve", "--error-rate", "0.5", "--size", "1M", image.toString()),
                "--error-rate applies to the error filter only");
        assertOneLineError(jloop("serve", "--filter", "log", "--size", "1M", image.toString()),
                "the log filter needs --log-file, the file it logs to");
        assertOneLineError(jloop("serve", "--filter", "readahead:readahead-max=1K", "--size", "1M", image.toString()), "--readahead-max: 1 KiB is not from 64K to 256M");
        assertFalse(Files.exists(image), "nothing is created when an option is wrong");
    }

    @Test
    void theLogShowsEachRequestOfAClient()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        Path disk = dir.resolve("disk.img");
        Path log = dir.resolve("requests.log");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "1M", "--filter", "log:log-file=" + log, disk.toString())) {
            assertTrue(server.startLine().contains("filters log"), server.startLine());
            Exec.check(60, "qemu-io", "-f", "raw", "-c", "write -P 1 0 64k", "-c", "read -P 1 0 64k", "-c", "flush", server.uri());
            assertEquals(0, server.stop(), server.log());
        }
        List<String> lines = Files.readAllLines(log);
        String time = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{6}";
        assertTrue(lines.get(0).matches(time + " file=disk\\.img Open size=1048576 read-only=0 .*"), lines.get(0));
        assertTrue(lines.get(lines.size() - 1).matches(time + " file=disk\\.img Close requests=\\d+"), lines.get(lines.size() - 1));
        // qemu-io writes through by default, as FUA writes
        int write = indexOf(lines, " Write id=\\d+ offset=0 count=65536 fua=[01] result=65536 latency=\\d+us");
        int read = indexOf(lines, " Read id=\\d+ offset=0 count=65536 fua=0 result=65536 latency=\\d+us");
        int flush = indexOf(lines, " Flush id=\\d+ datasync=1 result=0 latency=\\d+us");
        assertTrue(write < read && read < flush, "the write, the read and the flush in the order qemu-io made them: " + lines);
    }

    @Test
    void statsAreWrittenOnSigusr1AndAtTheEnd()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("kill");
        int size = 4 << 20;
        byte[] content = randomBytes(size, 7);
        Path source = dir.resolve("source.img");
        Files.write(source, content);
        Path disk = dir.resolve("disk.img");
        Path stats = dir.resolve("disk.stats");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "4M", "--filter", "stats:stats-file=" + stats,
                disk.toString())) {
            Exec.check(120, "nbdcopy", "--flush", source.toString(), server.uri());
            Path back = dir.resolve("back.img");
            Exec.check(120, "nbdcopy", server.uri(), back.toString());
            assertArrayEquals(content, Files.readAllBytes(back));

            Exec.check(30, "kill", "-USR1", String.valueOf(server.pid()));
            String text = await(stats, "disk.img: open for");
            assertEquals(size, bytes(text, "write"), text);
            assertEquals(size, bytes(text, "read"), text);
            assertTrue(text.matches("(?s).*\n  flush: [1-9]\\d* ops, 0 bytes, .*"), "nbdcopy --flush flushes what it wrote: " + text);
            assertEquals(0, server.stop(), server.log());
        }
        String text = Files.readString(stats);
        assertTrue(text.startsWith("disk.img: closed after "), text);
        assertEquals(size, bytes(text, "write"), text);
        assertEquals(size, bytes(text, "read"), text);
        assertTrue(text.matches("(?s).*\n  read: \\d+ ops, \\d+ bytes, \\d+\\.\\d\\d MB/s, latency p50=\\S+ p90=\\S+ p99=\\S+ p99\\.9=\\S+ max=\\S+\n.*"), text);
    }

    /**
     * Sequential reads through readahead over a file opened O_DIRECT (which declares no cache of
     * its own, so the filter reads ahead itself), and cacheextents above a log of what reaches the
     * file: fewer, larger reads below, one extents question for every block status, and the same
     * data and map as the file.
     */
    @Test
    void readaheadAndCacheextentsServeTheFileWithFewerRequestsBelow()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("qemu-img");
        CiAssumptions.assumeCommand("nbdcopy");
        int size = 4 << 20;
        Path disk = dir.resolve("disk.img");
        byte[] content = new byte[size];
        byte[] data = randomBytes(1 << 20, 11);
        System.arraycopy(data, 0, content, 0, data.length);
        System.arraycopy(data, 0, content, 3 << 20, data.length);
        try (FileChannel channel = FileChannel.open(disk, StandardOpenOption.CREATE_NEW,
                StandardOpenOption.WRITE)) {
            channel.write(ByteBuffer.wrap(data), 0);
            channel.write(ByteBuffer.wrap(data), 3 << 20);
        }
        String fileMap = Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", disk.toString());
        Path log = dir.resolve("below.log");
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--direct", "--filter", "readahead", "--filter", "cacheextents",
                "--filter", "log:log-file=" + log, disk.toString())) {
            String[] reads = new String[32];
            for (int i = 0; i < reads.length; i++) {
                reads[i] = "read " + (i * 64) + "k 64k";
            }
            List<String> command = new ArrayList<>(List.of("qemu-io", "-f", "raw", "-t", "none"));
            for (String read : reads) {
                command.add("-c");
                command.add(read);
            }
            command.add(server.uri());
            Exec.check(60, command.toArray(String[]::new));
            String servedMap = Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", server.uri());
            assertEquals(dataRanges(fileMap), dataRanges(servedMap), "the map through the filters");
            Path back = dir.resolve("back.img");
            Exec.check(120, "nbdcopy", server.uri(), back.toString());
            assertArrayEquals(content, Files.readAllBytes(back));
            assertEquals(0, server.stop(), server.log());
        }
        List<String> lines = Files.readAllLines(log);
        List<Long> firstReads = lines.stream()
                .map(line -> Pattern.compile(" Read id=\\d+ offset=(\\d+) count=(\\d+) ").matcher(line))
                .filter(Matcher::find)
                .filter(read -> Long.parseLong(read.group(1)) < 2 << 20)
                .map(read -> Long.parseLong(read.group(2)))
                .toList();
        assertTrue(firstReads.size() < 16, "32 sequential reads of 64K became " + firstReads.size() + " below: " + firstReads);
        assertTrue(firstReads.stream().anyMatch(count -> count > 64 * 1024), "larger reads below: " + firstReads);
        assertEquals(1, lines.stream().filter(line -> line.contains(" Extents id=")).count(), "one extents question for all block status: " + lines);
    }

    /** The data ranges of a qemu-img map in JSON, merged: how qemu-img reports them may differ in how it splits them. */
    private static List<String> dataRanges(String map)
    {
        List<String> ranges = new ArrayList<>();
        Matcher entry = Pattern.compile("\\{ *\"start\": (\\d+), \"length\": (\\d+), [^}]*\"data\": (true|false)[^}]*}").matcher(map);
        long start = -1;
        long end = -1;
        while (entry.find()) {
            if (!entry.group(3).equals("true")) {
                continue;
            }
            long from = Long.parseLong(entry.group(1));
            long to = from + Long.parseLong(entry.group(2));
            if (from == end) {
                end = to;
                continue;
            }
            if (start >= 0) {
                ranges.add(start + "+" + (end - start));
            }
            start = from;
            end = to;
        }
        if (start >= 0) {
            ranges.add(start + "+" + (end - start));
        }
        assertTrue(!ranges.isEmpty(), "no data in " + map);
        return ranges;
    }

    private static int indexOf(List<String> lines, String pattern)
    {
        Pattern line = Pattern.compile(".* file=disk\\.img" + pattern);
        for (int i = 0; i < lines.size(); i++) {
            if (line.matcher(lines.get(i)).matches()) {
                return i;
            }
        }
        throw new AssertionError("no line like '" + pattern + "' in " + lines);
    }

    private static long bytes(String text, String operation)
    {
        Matcher matcher = Pattern.compile("\n  " + operation + ": \\d+ ops, (\\d+) bytes").matcher(text);
        assertTrue(matcher.find(), "no " + operation + " in " + text);
        return Long.parseLong(matcher.group(1));
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
            Thread.sleep(50);
        }
        throw new AssertionError(path + " never showed '" + expected + "'");
    }
}
