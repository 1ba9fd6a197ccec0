package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jloop serve} against NBD clients nobody here wrote: libnbd's nbdinfo, nbdcopy and nbdfuse,
 * qemu-img, qemu-io, fio's nbd engine, and the kernel's ext4 on top of nbdfuse. One subclass per
 * backend.
 */
abstract class AbstractNbdInteropIT
        extends AbstractJloopIT
{
    private static final long MIB = 1 << 20;

    /** The {@code --backend} under test. */
    protected abstract String backend();

    /** Starts {@code jloop serve --backend BACKEND ARGS}. */
    @Override
    protected JloopProcess serve(String... args)
            throws Exception
    {
        List<String> all = new ArrayList<>(List.of("--backend", backend()));
        all.addAll(List.of(args));
        return super.serve(all.toArray(String[]::new));
    }

    private JloopProcess serveOnSocket(Path image, String... args)
            throws Exception
    {
        List<String> all = new ArrayList<>(List.of("--socket", dir.resolve("nbd.sock").toString()));
        all.addAll(List.of(args));
        all.add(image.toString());
        return serve(all.toArray(String[]::new));
    }

    @Test
    void nbdinfoShowsSizeAndFlags()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "64M");
        assertTrue(server.startLine().contains("backend " + backend()), server.startLine());

        String json = Exec.check(30, "nbdinfo", "--json", server.uri());
        assertEquals(64 * MIB, jsonNumber(json, "export-size"), json);
        assertEquals("false", jsonValue(json, "is_read_only"), json);
        for (String flag : List.of("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn", "can_fast_zero", "can_cache", "can_df", "structured")) {
            assertEquals("true", jsonValue(json, flag), flag + " in " + json);
        }
        assertTrue(Pattern.compile("\"contexts\"\\s*:\\s*\\[\\s*\"base:allocation\"").matcher(json).find(), json);
        assertEquals("disk.img (64 MiB)", jsonValue(json, "description"), json);
        assertEquals(1, jsonNumber(json, "block_size_minimum"), json);
        assertEquals(4096, jsonNumber(json, "block_size_preferred"), json);
        assertEquals(32 * MIB, jsonNumber(json, "block_size_maximum"), json);
        assertEquals(64 * MIB, Files.size(image), "--size creates the file with that size");
        assertEquals(0, server.stop());

        JloopProcess readOnly = serveOnSocket(image, "--read-only");
        String readOnlyJson = Exec.check(30, "nbdinfo", "--json", readOnly.uri());
        assertEquals("true", jsonValue(readOnlyJson, "is_read_only"), readOnlyJson);
        assertEquals("false", jsonValue(readOnlyJson, "can_trim"), readOnlyJson);
        assertEquals("false", jsonValue(readOnlyJson, "can_fast_zero"), readOnlyJson);
        assertEquals("true", jsonValue(readOnlyJson, "can_multi_conn"), readOnlyJson);
        assertEquals(0, readOnly.stop());

        // O_DIRECT: the file's logical block is preferred; smaller requests are bounced, so the minimum stays 1
        // (as qemu-nbd --cache=none), else libnbd would refuse them before sending a byte
        JloopProcess direct = serveOnSocket(image, "--direct");
        String directJson = Exec.check(30, "nbdinfo", "--json", direct.uri());
        assertEquals(1, jsonNumber(directJson, "block_size_minimum"), directJson);
        assertEquals(4096, jsonNumber(directJson, "block_size_preferred"), directJson);
        assertEquals("false", jsonValue(directJson, "can_cache"), "no page cache to warm under O_DIRECT: " + directJson);
    }

    /** Data at these [offset, length) ranges of a 32 MiB sparse file, holes elsewhere. */
    private static final long[][] SPARSE_LAYOUT = {
            {0, 64 << 10},
            {MIB, 256 << 10},
            {8 * MIB, 64 << 10},
            {20 * MIB, MIB},
            {32 * MIB - (64 << 10), 64 << 10},
    };
    private static final long SPARSE_SIZE = 32 * MIB;

    private static void writeSparse(Path file)
            throws IOException
    {
        Random random = new Random(11);
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            channel.truncate(0);
            for (long[] range : SPARSE_LAYOUT) {
                byte[] data = new byte[(int) range[1]];
                random.nextBytes(data);
                channel.write(ByteBuffer.wrap(data), range[0]);
            }
        }
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.setLength(SPARSE_SIZE);
        }
    }

    private static List<List<Long>> expectedData()
    {
        return Arrays.stream(SPARSE_LAYOUT).map(r -> List.of(r[0], r[1])).toList();
    }

    @Test
    void nbdinfoMapAndQemuImgMapMatchTheFileHoles()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        CiAssumptions.assumeCommand("qemu-img");
        Path image = dir.resolve("sparse.img");
        writeSparse(image);
        // the file system's own view, without jloop
        assertEquals(expectedData(), qemuImgData(Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", image.toString())),
                "the test file is not sparse as planned on this file system");
        JloopProcess server = serveOnSocket(image, "--read-only");

        String map = Exec.check(60, "nbdinfo", "--map", server.uri());
        List<List<Long>> data = new ArrayList<>();
        long end = 0;
        for (String line : Exec.lines(map)) {
            String[] fields = line.trim().split("\\s+");
            long start = Long.parseLong(fields[0]);
            long length = Long.parseLong(fields[1]);
            int type = Integer.parseInt(fields[2]);
            assertEquals(end, start, "extents are contiguous: " + map);
            end = start + length;
            if (type == 0) {
                data.add(List.of(start, length));
            }
            else {
                assertEquals(3, type, "holes read as zeros: " + map);
            }
        }
        assertEquals(SPARSE_SIZE, end, map);
        assertEquals(expectedData(), data, map);

        String json = Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", server.uri());
        assertEquals(expectedData(), qemuImgData(json), json);
    }

    @Test
    void nbdcopyKeepsHolesBothWays()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        CiAssumptions.assumeCommand("qemu-io");
        Path source = dir.resolve("source.img");
        writeSparse(source);
        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "32M");
        // a dirty export first: holes of the source must become holes (or zeros) there, not stay stale
        Exec.check(120, "qemu-io", "-f", "raw", "-c", "write -P 0x77 0 32M", server.uri());

        Exec.check(300, "nbdcopy", source.toString(), server.uri());
        Path copy = dir.resolve("copy.img");
        Exec.check(300, "nbdcopy", server.uri(), copy.toString());
        assertEquals(-1, Files.mismatch(source, copy), "data copied through NBD differs");
        assertEquals(0, server.stop());
        assertEquals(-1, Files.mismatch(source, image), "the served file differs");

        long dataBytes = Arrays.stream(SPARSE_LAYOUT).mapToLong(r -> r[1]).sum();
        for (Path file : List.of(image, copy)) {
            long allocated = allocatedBytes(file);
            assertTrue(allocated <= dataBytes + MIB, file.getFileName() + " holds " + allocated + " bytes for " + dataBytes + " of data: holes were filled");
            assertEquals(expectedData(), qemuImgData(Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", file.toString())),
                    file.getFileName() + ": holes where the source has them");
        }
    }

    @Test
    void structuredReadsOfHolesReadZeros()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path source = dir.resolve("source.img");
        writeSparse(source);
        JloopProcess server = serveOnSocket(source, "--read-only");
        // without block status nbdcopy reads everything: the holes come back as OFFSET_HOLE chunks
        Path copy = dir.resolve("copy.img");
        Exec.check(300, "nbdcopy", "--no-extents", "--request-size=4194304", server.uri(), copy.toString());
        assertEquals(-1, Files.mismatch(source, copy));
    }

    private static long allocatedBytes(Path file)
    {
        String[] blocks = Exec.check(30, "stat", "-c", "%b %B", file.toString()).trim().split(" ");
        return Long.parseLong(blocks[0]) * Long.parseLong(blocks[1]);
    }

    /** The data ranges of {@code qemu-img map --output=json}, adjacent ones merged. */
    static List<List<Long>> qemuImgData(String json)
    {
        List<List<Long>> data = new ArrayList<>();
        Matcher m = Pattern.compile("\"start\":\\s*(\\d+),\\s*\"length\":\\s*(\\d+),[^}]*\"data\":\\s*(true|false)").matcher(json);
        while (m.find()) {
            if (!m.group(3).equals("true")) {
                continue;
            }
            long start = Long.parseLong(m.group(1));
            long length = Long.parseLong(m.group(2));
            if (!data.isEmpty()) {
                List<Long> last = data.get(data.size() - 1);
                if (last.get(0) + last.get(1) == start) {
                    data.set(data.size() - 1, List.of(last.get(0), last.get(1) + length));
                    continue;
                }
            }
            data.add(List.of(start, length));
        }
        return data;
    }

    @Test
    void nbdcopyRoundTripAndQemuImgCompare()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        Path source = dir.resolve("source.bin");
        writeRandom(source, 256 * MIB, 42);
        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "256M");

        Exec.check(300, "nbdcopy", source.toString(), server.uri());
        Path copy = dir.resolve("copy.bin");
        Exec.check(300, "nbdcopy", server.uri(), copy.toString());
        assertEquals(-1, Files.mismatch(source, copy), "data copied in and out through NBD differs");

        Exec compare = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", source.toString(), server.uri());
        assertEquals(0, compare.exitCode(), compare.stdout() + compare.stderr());
        assertEquals(0, server.stop());
        assertEquals(-1, Files.mismatch(source, image), "the image file holds the data after SIGTERM");

        // A changed byte must be noticed: the comparison is not vacuous.
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE)) {
            channel.write(ByteBuffer.wrap(new byte[] {(byte) ~Files.readAllBytes(source)[12345]}), 12345);
        }
        JloopProcess again = serveOnSocket(image);
        Exec differs = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", source.toString(), again.uri());
        assertEquals(1, differs.exitCode(), differs.stdout() + differs.stderr());
    }

    /**
     * Bulk copies with large requests, as backup tools make them, on both connection loops: 4 MiB
     * requests on 4 connections in and out of an image with a hole in the middle, compared byte for
     * byte and by qemu-img; then on one connection, data read (its extent learnt), zeroed with a hole
     * punched and read again must read as zeros.
     */
    @Test
    void largeRequestCopiesOnBothConnectionLoops()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        CiAssumptions.assumeCommand("qemu-io");
        Path source = dir.resolve("source.bin");
        writeRandom(source, 64 * MIB, 17);
        try (FileChannel channel = FileChannel.open(source, StandardOpenOption.WRITE)) {
            // a hole of 16 MiB: reads across it have data, hole and data chunks
            channel.write(ByteBuffer.allocate((int) (16 * MIB)), 24 * MIB);
        }
        for (String loop : List.of("io_uring", "threads")) {
            Path image = dir.resolve("disk-" + loop + ".img");
            JloopProcess server = serveOnSocket(image, "--size", "64M", "--nbd-loop", loop);
            Exec.check(300, "nbdcopy", "--request-size=4194304", "--connections=4", "--threads=4", source.toString(), server.uri());
            Path copy = dir.resolve("copy-" + loop + ".bin");
            Exec.check(300, "nbdcopy", "--request-size=4194304", "--connections=4", "--threads=4", server.uri(), copy.toString());
            assertEquals(-1, Files.mismatch(source, copy), loop + ": data copied in and out with 4 MiB requests differs");
            Exec compare = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", source.toString(), server.uri());
            assertEquals(0, compare.exitCode(), loop + ": " + compare.stdout() + compare.stderr());

            // one connection: reads 4 MiB (the data extent is learnt), zeroes 1 MiB of it (may punch a hole), reads zeros
            // there; reads a hole, writes into it, reads the data
            String out = Exec.check(120, "qemu-io", "-f", "raw", "-d", "unmap",
                    "-c", "read 40M 4M",
                    "-c", "write -z -u 41M 1M",
                    "-c", "read -P 0 41M 1M",
                    "-c", "read -P 0 24M 4M",
                    "-c", "write -P 0x33 25M 1M",
                    "-c", "read -P 0x33 25M 1M",
                    server.uri());
            assertFalse(out.contains("fail") || out.contains("Pattern verification"), out);
            Path after = dir.resolve("after-" + loop + ".bin");
            Exec.check(300, "nbdcopy", "--no-extents", "--request-size=4194304", server.uri(), after.toString());
            byte[] expected = Files.readAllBytes(source);
            Arrays.fill(expected, (int) (41 * MIB), (int) (42 * MIB), (byte) 0);
            Arrays.fill(expected, (int) (25 * MIB), (int) (26 * MIB), (byte) 0x33);
            assertEquals(-1, Arrays.mismatch(expected, Files.readAllBytes(after)), loop + ": the zeroed MiB reads as zeros, the rest as before");
            assertEquals(0, server.stop(), server.log());
        }
    }

    @Test
    void qemuIoPatternsDiscardAndWriteZeroes()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("qemu-img");
        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "16M");
        String out = Exec.check(120, "qemu-io", "-f", "raw", "-d", "unmap",
                "-c", "write -P 0xab 0 4M",
                "-c", "write -f -P 0xcd 4M 64k",          // FUA
                "-c", "write -P 0x5a 4097 12345",         // unaligned
                "-c", "read -P 0xab 0 4097",
                "-c", "read -P 0x5a 4097 12345",
                "-c", "read -P 0xab 16442 1032",
                "-c", "read -P 0xcd 4M 64k",
                "-c", "write -z 1M 1M",                   // write zeroes, may punch
                "-c", "read -P 0 1M 1M",
                "-c", "write -P 0x11 8M 2M",
                "-c", "write -z -u 8M 1M",                // write zeroes, may unmap
                "-c", "read -P 0 8M 1M",
                "-c", "read -P 0x11 9M 1M",
                "-c", "discard 2M 1M",
                "-c", "read -P 0 2M 1M",
                "-c", "flush",
                server.uri());
        assertFalse(out.contains("fail") || out.contains("Pattern verification"), out);
        assertEquals(15, countMatches(out, "^(read|wrote|discard) \\d+/\\d+ bytes", out), out);
        assertEquals(0, server.stop());

        // -z -u and discard may unmap: holes in the file; -z alone (NO_HOLE) keeps its blocks, zeroed
        // in place (ext4 reports such unwritten extents as holes to SEEK_DATA, so count blocks instead)
        List<List<Long>> data = qemuImgData(Exec.check(60, "qemu-img", "map", "--output=json", "-f", "raw", image.toString()));
        assertFalse(overlaps(data, 8 * MIB, MIB), "write -z -u punched a hole: " + data);
        assertFalse(overlaps(data, 2 * MIB, MIB), "discard punched a hole: " + data);
        long allocated = allocatedBytes(image);
        long written = 4 * MIB + 65536 + 2 * MIB - MIB - MIB;
        assertTrue(allocated >= written && allocated <= written + 65536,
                "allocated " + allocated + " bytes, expected " + written + " (NO_HOLE zeroing keeps blocks, unmapping frees them)");
        byte[] bytes = Files.readAllBytes(image);
        assertTrue(allEqual(bytes, 0, 4097, (byte) 0xab));
        assertTrue(allEqual(bytes, 4097, 4097 + 12345, (byte) 0x5a));
        assertTrue(allEqual(bytes, 4097 + 12345, (int) MIB, (byte) 0xab));
        assertTrue(allEqual(bytes, (int) MIB, (int) (2 * MIB), (byte) 0), "write zeroes reached the file");
        assertTrue(allEqual(bytes, (int) (2 * MIB), (int) (3 * MIB), (byte) 0), "discard reached the file");
        assertTrue(allEqual(bytes, (int) (4 * MIB), (int) (4 * MIB + 65536), (byte) 0xcd));
        assertTrue(allEqual(bytes, (int) (8 * MIB), (int) (9 * MIB), (byte) 0));
        assertTrue(allEqual(bytes, (int) (9 * MIB), (int) (10 * MIB), (byte) 0x11));
    }

    @Test
    void fioRandomWritesVerifyWithCrc32c()
            throws Exception
    {
        CiAssumptions.assumeCommand("fio");
        CiAssumptions.assumeAvailable(Exec.run(30, "fio", "--enghelp=nbd").exitCode() == 0, "fio has no nbd engine");
        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "64M");
        Exec fio = Exec.run(600, "fio", "--name=verify", "--ioengine=nbd", "--uri=" + server.uri(),
                "--rw=randrw", "--bs=4k", "--iodepth=64", "--size=64M", "--io_size=64M",
                "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_backlog=1024",
                "--randrepeat=1", "--norandommap=0", "--verify_state_save=0");
        assertEquals(0, fio.exitCode(), fio.stdout() + fio.stderr());
        assertTrue(fio.stdout().contains("verify"), fio.stdout());
        assertFalse(fio.stdout().contains("verify failed") || fio.stderr().contains("bad magic"), fio.stdout() + fio.stderr());
        Matcher errors = Pattern.compile("err=\\s*(\\d+)").matcher(fio.stdout());
        assertTrue(errors.find() && errors.group(1).equals("0"), fio.stdout());
    }

    /** Under --direct, requests of any size from 512 bytes up, through libnbd (which checks them against the advertised minimum). */
    @Test
    void fioUnalignedSizesUnderDirectVerify()
            throws Exception
    {
        CiAssumptions.assumeCommand("fio");
        CiAssumptions.assumeAvailable(Exec.run(30, "fio", "--enghelp=nbd").exitCode() == 0, "fio has no nbd engine");
        Path image = dir.resolve("direct.img");
        JloopProcess server = serveOnSocket(image, "--size", "16M", "--direct");
        Exec fio = Exec.run(600, "fio", "--name=unaligned", "--ioengine=nbd", "--uri=" + server.uri(),
                "--rw=randwrite", "--bsrange=512-64k", "--blockalign=512", "--iodepth=32", "--size=16M", "--io_size=16M",
                "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--randrepeat=1", "--verify_state_save=0");
        assertEquals(0, fio.exitCode(), fio.stdout() + fio.stderr());
        assertFalse(fio.stdout().contains("verify failed") || fio.stderr().contains("bad magic"), fio.stdout() + fio.stderr());
        Matcher errors = Pattern.compile("err=\\s*(\\d+)").matcher(fio.stdout());
        assertTrue(errors.find() && errors.group(1).equals("0"), fio.stdout());
    }

    @Test
    void ext4OnNbdfuseAndLoopDevice()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdfuse");
        CiAssumptions.assumeCommand("losetup");
        CiAssumptions.assumeCommand("mkfs.ext4");
        CiAssumptions.assumeAvailable("root".equals(System.getProperty("user.name")), "needs root for losetup and mount");
        CiAssumptions.assumeAvailable(Files.exists(Path.of("/dev/fuse")), "needs /dev/fuse");

        Path image = dir.resolve("disk.img");
        JloopProcess server = serveOnSocket(image, "--size", "256M");
        Path fuse = Files.createDirectory(dir.resolve("fuse"));
        Path mnt = Files.createDirectory(dir.resolve("mnt"));
        Process nbdfuse = new ProcessBuilder("nbdfuse", fuse.resolve("nbd").toString(), server.uri())
                .redirectErrorStream(true).redirectOutput(dir.resolve("nbdfuse.log").toFile()).start();
        String loop = null;
        try {
            waitFor(fuse.resolve("nbd"));
            loop = Exec.check(30, "losetup", "--find", "--show", "--direct-io=off", fuse.resolve("nbd").toString()).trim();
            Exec.check(120, "mkfs.ext4", "-q", "-F", loop);
            Exec.check(30, "mount", loop, mnt.toString());
            List<String> sums = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                Path file = mnt.resolve("file" + i);
                writeRandom(file, (i + 1) * 3 * MIB + i * 4099L, i);
                sums.add(Exec.check(60, "sha256sum", file.toString()));
            }
            Exec.check(30, "sync");
            Exec.check(60, "umount", mnt.toString());
            Exec fsck = Exec.run(120, "fsck.ext4", "-fn", loop);
            assertEquals(0, fsck.exitCode(), fsck.stdout() + fsck.stderr());
            Exec.check(30, "losetup", "-d", loop);
            loop = null;
            Exec.check(30, "fusermount3", "-u", fuse.toString());
            nbdfuse.waitFor();
            assertEquals(0, server.stop());

            // The image itself, without jloop: a clean file system holding the same files.
            Exec hostFsck = Exec.run(120, "fsck.ext4", "-fn", image.toString());
            assertEquals(0, hostFsck.exitCode(), hostFsck.stdout() + hostFsck.stderr());
            Exec.check(30, "mount", "-o", "loop,ro", image.toString(), mnt.toString());
            try {
                for (String sum : sums) {
                    Exec check = Exec.run(60, "sh", "-c", "echo '" + sum.trim() + "' | sha256sum -c -");
                    assertEquals(0, check.exitCode(), check.stdout() + check.stderr());
                }
            }
            finally {
                Exec.run(60, "umount", mnt.toString());
            }
        }
        finally {
            Exec.run(30, "umount", mnt.toString());
            if (loop != null) {
                Exec.run(30, "losetup", "-d", loop);
            }
            Exec.run(30, "fusermount3", "-u", fuse.toString());
            nbdfuse.destroy();
        }
    }

    private static boolean covers(List<List<Long>> ranges, long offset, long length)
    {
        return ranges.stream().anyMatch(r -> r.get(0) <= offset && r.get(0) + r.get(1) >= offset + length);
    }

    private static boolean overlaps(List<List<Long>> ranges, long offset, long length)
    {
        return ranges.stream().anyMatch(r -> r.get(0) < offset + length && offset < r.get(0) + r.get(1));
    }

    static void writeRandom(Path file, long size, long seed)
            throws IOException
    {
        Random random = new Random(seed);
        byte[] block = new byte[1 << 20];
        try (OutputStream out = Files.newOutputStream(file)) {
            for (long done = 0; done < size; done += block.length) {
                random.nextBytes(block);
                out.write(block, 0, (int) Math.min(block.length, size - done));
            }
        }
    }

    private static void waitFor(Path path)
            throws InterruptedException
    {
        for (int i = 0; i < 300 && !Files.exists(path); i++) {
            Thread.sleep(100);
        }
        assertTrue(Files.exists(path), path + " did not appear");
    }

    private static boolean allEqual(byte[] data, int from, int to, byte value)
    {
        byte[] expected = new byte[to - from];
        Arrays.fill(expected, value);
        return Arrays.equals(data, from, to, expected, 0, expected.length);
    }

    private static int countMatches(String text, String regex, String context)
    {
        return (int) Pattern.compile(regex, Pattern.MULTILINE).matcher(text).results().count();
    }
}
