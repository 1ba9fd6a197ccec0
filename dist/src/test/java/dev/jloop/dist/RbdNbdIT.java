package dev.jloop.dist;

import dev.jloop.testkit.CephCluster;
import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jloop serve --backend rbd} on images of a one-node Ceph cluster ({@link CephCluster}), driven
 * by clients nobody here wrote: nbdcopy (four connections), nbdinfo, qemu-img and qemu-io, fio; and
 * checked through other librbd clients, qemu's own {@code rbd:} driver and {@code rbd export}.
 */
class RbdNbdIT
        extends AbstractJloopIT
{
    private static final long MIB = 1 << 20;

    private CephCluster cluster;

    @BeforeEach
    void startCluster()
    {
        cluster = CephCluster.assumeShared();
    }

    private String image(String name)
    {
        return CephCluster.POOL + "/it-" + ProcessHandle.current().pid() + "-" + name;
    }

    /** qemu's own rbd driver on the same image: {@code rbd:POOL/IMAGE:conf=...}. */
    private String qemuRbd(String image)
    {
        return "rbd:" + image + ":conf=" + cluster.conf();
    }

    private JloopProcess serveRbd(String... args)
            throws Exception
    {
        List<String> all = new ArrayList<>(List.of("--backend", "rbd", "--ceph-conf", cluster.conf().toString(),
                "--socket", dir.resolve("nbd.sock").toString()));
        all.addAll(List.of(args));
        return serve(all.toArray(String[]::new));
    }

    @Test
    void nbdcopyWithFourConnectionsQemuCompareAndMap()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("nbdinfo");
        CiAssumptions.assumeCommand("qemu-img");
        // data in the first 8 MiB and the last 4 MiB, zeros between: whole 4 MiB objects that stay holes
        Path source = dir.resolve("source.bin");
        try (RandomAccessFile file = new RandomAccessFile(source.toFile(), "rw")) {
            file.write(randomBytes((int) (8 * MIB), 1));
            file.seek(28 * MIB);
            file.write(randomBytes((int) (4 * MIB), 2));
        }
        String image = image("copy");
        JloopProcess server = serveRbd("--size", "32M", image);
        assertTrue(server.startLine().contains(image + ", 32 MiB"), server.startLine());

        String info = Exec.check(60, "nbdinfo", "--json", server.uri());
        assertEquals("true", jsonValue(info, "can_multi_conn"), info);
        assertEquals("true", jsonValue(info, "can_trim"), info);
        assertEquals("true", jsonValue(info, "can_fua"), info);
        assertEquals(32 * MIB, jsonNumber(info, "export-size"), info);

        Exec.check(300, "nbdcopy", "--connections=4", source.toString(), server.uri());
        Path copy = dir.resolve("copy.bin");
        Exec.check(300, "nbdcopy", "--connections=4", server.uri(), copy.toString());
        assertEquals(-1, Files.mismatch(source, copy), "data copied in and out through NBD differs");

        // jloop's export and qemu's rbd driver read the same image alike; a changed byte is noticed
        Exec compare = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", server.uri(), qemuRbd(image));
        assertEquals(0, compare.exitCode(), compare.stdout() + compare.stderr());
        Exec.check(60, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 12345 1", server.uri());
        Exec differs = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", source.toString(), qemuRbd(image));
        assertEquals(1, differs.exitCode(), differs.stdout() + differs.stderr());

        // the image's allocation, as rbd_diff_iterate2 tells it: the untouched objects are holes
        String map = Exec.check(60, "nbdinfo", "--map", server.uri());
        long end = 0;
        List<String> holes = new ArrayList<>();
        for (String line : Exec.lines(map)) {
            String[] fields = line.trim().split("\\s+");
            long start = Long.parseLong(fields[0]);
            assertEquals(end, start, "extents are contiguous: " + map);
            end = start + Long.parseLong(fields[1]);
            if (!fields[2].equals("0")) {
                assertEquals("3", fields[2], "holes read as zeros: " + map);
                holes.add(start + "+" + Long.parseLong(fields[1]));
            }
        }
        assertEquals(32 * MIB, end, map);
        assertEquals(List.of(8 * MIB + "+" + 20 * MIB), holes, "the zeros between the data are one hole of whole objects: " + map);
    }

    @Test
    void fioVerifiesAtQueueDepth32()
            throws Exception
    {
        CiAssumptions.assumeCommand("fio");
        CiAssumptions.assumeAvailable(Exec.run(30, "fio", "--enghelp=nbd").exitCode() == 0, "fio has no nbd engine");
        JloopProcess server = serveRbd("--size", "64M", image("fio"));
        Exec fio = Exec.run(600, "fio", "--name=verify", "--ioengine=nbd", "--uri=" + server.uri(),
                "--rw=randrw", "--bs=4k", "--iodepth=32", "--size=64M", "--io_size=32M",
                "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_backlog=1024",
                "--randrepeat=1", "--norandommap=0", "--verify_state_save=0");
        assertEquals(0, fio.exitCode(), fio.stdout() + fio.stderr());
        assertFalse(fio.stdout().contains("verify failed") || fio.stderr().contains("bad magic"), fio.stdout() + fio.stderr());
        Matcher errors = Pattern.compile("err=\\s*(\\d+)").matcher(fio.stdout());
        assertTrue(errors.find() && errors.group(1).equals("0"), fio.stdout());
    }

    /**
     * What a FUA write, or a write before a flush, put on the image is there for another librbd client
     * ({@code rbd export}) while jloop still serves it, its own cache included.
     */
    @Test
    void fuaAndFlushedWritesAreSeenByAnotherClient()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        String image = image("durable");
        JloopProcess server = serveRbd("--size", "8M", image);
        String out = Exec.check(120, "qemu-io", "-f", "raw",
                "-c", "write -f -P 0xab 0 1M",      // FUA
                "-c", "write -P 0xcd 1M 1M",
                "-c", "write -P 0xef 4095 3",       // unaligned, across a block
                "-c", "flush",
                "-c", "write -z 3M 1M",
                "-c", "flush",
                server.uri());
        assertFalse(out.contains("fail"), out);
        Path exported = dir.resolve("exported.bin");
        cluster.rbd("export", "--no-progress", image, exported.toString());
        byte[] bytes = Files.readAllBytes(exported);
        assertEquals(8 * MIB, bytes.length);
        byte[] expected = new byte[(int) (8 * MIB)];
        Arrays.fill(expected, 0, (int) MIB, (byte) 0xab);
        Arrays.fill(expected, (int) MIB, (int) (2 * MIB), (byte) 0xcd);
        Arrays.fill(expected, 4095, 4098, (byte) 0xef);
        assertEquals(-1, Arrays.mismatch(expected, bytes), "rbd export of the image while jloop serves it");
        assertTrue(server.awaitExit(java.time.Duration.ofMillis(1)).isEmpty(), "jloop still serves");
        assertEquals(0, server.stop(), "exit code after SIGTERM");
    }

    /**
     * With librbd's cache in writeback (after a first flush, holding dirty data for 30 s): a plain
     * write is not yet on the OSDs, a FUA write is once answered, and a plain write is after a flush;
     * each seen by {@code rbd export} while the connection stays open, so that no disconnect flushes
     * anything.
     */
    @Test
    void fuaWriteIsOnTheClusterBeforeItIsAnswered()
            throws Exception
    {
        String image = image("fua");
        JloopProcess server = serveRbd("--size", "4M", "--ceph-set", "rbd_cache_policy=writeback;rbd_cache_max_dirty_age=30", image);
        List<String> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        try (PipelinedNbdClient client = PipelinedNbdClient.connect(java.net.UnixDomainSocketAddress.of(dir.resolve("nbd.sock")), 0, 8,
                (c, request, error, data) -> {
                    if (error != 0) {
                        errors.add(request + ": error " + error);
                    }
                })) {
            byte[] plain = new byte[65536];
            Arrays.fill(plain, (byte) 0x61);
            byte[] fua = new byte[65536];
            Arrays.fill(fua, (byte) 0x62);
            byte[] flushed = new byte[65536];
            Arrays.fill(flushed, (byte) 0x63);
            send(client, new PipelinedNbdClient.Request(1, PipelinedNbdClient.CMD_FLUSH, 0, 0, 0, null));
            send(client, new PipelinedNbdClient.Request(2, PipelinedNbdClient.CMD_WRITE, 0, 0, plain.length, plain));
            // the control: without FUA or flush the write is still in jloop's cache, so the checks below can fail
            byte[] seen = export(image);
            assertEquals(-1, Arrays.mismatch(new byte[plain.length], Arrays.copyOf(seen, plain.length)), "a plain write, not flushed yet");

            send(client, new PipelinedNbdClient.Request(3, PipelinedNbdClient.CMD_WRITE, PipelinedNbdClient.CMD_FLAG_FUA, MIB, fua.length, fua));
            seen = export(image);
            assertEquals(-1, Arrays.mismatch(fua, Arrays.copyOfRange(seen, (int) MIB, (int) MIB + fua.length)), "the FUA write, once answered");

            send(client, new PipelinedNbdClient.Request(4, PipelinedNbdClient.CMD_WRITE, 0, 2 * MIB, flushed.length, flushed));
            send(client, new PipelinedNbdClient.Request(5, PipelinedNbdClient.CMD_FLUSH, 0, 0, 0, null));
            seen = export(image);
            assertEquals(-1, Arrays.mismatch(flushed, Arrays.copyOfRange(seen, (int) (2 * MIB), (int) (2 * MIB) + flushed.length)),
                    "a plain write after the flush that followed it");
        }
        assertEquals(List.of(), errors);
    }

    private static void send(PipelinedNbdClient client, PipelinedNbdClient.Request request)
            throws Exception
    {
        boolean[] given = {false};
        client.send(c -> {
            if (given[0]) {
                return null;
            }
            given[0] = true;
            return request;
        }).get(60, java.util.concurrent.TimeUnit.SECONDS);
    }

    private byte[] export(String image)
            throws Exception
    {
        Path exported = Files.createTempFile(dir, "export-", ".bin");
        Files.delete(exported);
        cluster.rbd("export", "--no-progress", image, exported.toString());
        return Files.readAllBytes(exported);
    }

    /** A snapshot export is read-only and holds the snapshot's data; the image's export beside it writes. */
    @Test
    void snapshotExportRefusesWrites()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("nbdinfo");
        String image = image("snap");
        cluster.rbd("create", "--size", "4M", image);
        Exec.check(120, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", writePattern(0x11), qemuRbd(image));
        cluster.rbd("snap", "create", image + "@before");
        JloopProcess server = serveRbd("--export", "live=rbd:" + image, "--export", "old=rbd:" + image + "@before");
        String live = "nbd+unix:///live?socket=" + dir.resolve("nbd.sock");
        String old = "nbd+unix:///old?socket=" + dir.resolve("nbd.sock");

        Exec.check(120, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 64k", live);
        String info = Exec.check(60, "nbdinfo", "--json", old);
        assertEquals("true", jsonValue(info, "is_read_only"), info);
        Exec refused = Exec.run(120, "qemu-io", "-f", "raw", "-c", "write -P 0x33 0 4k", old);
        assertTrue(refused.stdout().contains("failed") || refused.stderr().contains("failed") || refused.exitCode() != 0,
                "a write to the snapshot's export is refused: " + refused.stdout() + refused.stderr());
        Exec.check(120, "qemu-io", "-f", "raw", "-r", "-c", "read -P 0x11 0 4M", old);
        Exec.check(120, "qemu-io", "-f", "raw", "-r", "-c", "read -P 0x22 0 64k", "-c", "read -P 0x11 64k 1M", live);
    }

    /** Filters stack over an image as over a file: copy-on-write keeps the image as it was. */
    @Test
    void cowFilterLeavesTheImageAlone()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        String image = image("cow");
        cluster.rbd("create", "--size", "4M", image);
        Exec.check(120, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", writePattern(0x44), qemuRbd(image));
        JloopProcess server = serveRbd("--direct", "--filter", "stats:stats-file=" + dir.resolve("stats"), "--filter", "cow", image);
        Exec.check(120, "qemu-io", "-f", "raw", "-c", "write -P 0x55 64k 64k", "-c", "flush", "-c", "read -P 0x55 64k 64k",
                "-c", "read -P 0x44 0 64k", "-c", "read -P 0x44 128k 1M", server.uri());
        assertEquals(0, server.stop());
        Path exported = dir.resolve("cow-exported.bin");
        cluster.rbd("export", "--no-progress", image, exported.toString());
        byte[] expected = new byte[(int) (4 * MIB)];
        Arrays.fill(expected, (byte) 0x44);
        assertEquals(-1, Arrays.mismatch(expected, Files.readAllBytes(exported)), "the image under the cow filter is unchanged");
        String stats = Files.readString(dir.resolve("stats"));
        assertTrue(stats.contains("  write: 1 ops, 65536 bytes"), "the stats filter above cow counted the write: " + stats);
    }

    @Test
    void missingImageIsOneLineError()
    {
        String image = image("missing");
        Exec result = jloop("serve", "--backend", "rbd", "--ceph-conf", cluster.conf().toString(), image);
        assertOneLineError(result, image + ": no such image (add --size SIZE to create it)");
    }

    /** A 4 MiB raw file of {@code value} bytes, for qemu-img convert. */
    private String writePattern(int value)
            throws Exception
    {
        byte[] bytes = new byte[(int) (4 * MIB)];
        Arrays.fill(bytes, (byte) value);
        Path file = dir.resolve("pattern-" + value + ".raw");
        Files.write(file, bytes);
        return file.toString();
    }
}
