package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class IoUringNbdInteropIT
        extends AbstractNbdInteropIT
{
    private static final long MIB = 1 << 20;
    private static final Pattern SPLICED = Pattern.compile(", (\\d+) reads spliced");
    private static final Pattern SPLICED_WRITES = Pattern.compile(", (\\d+) writes spliced");

    @Override
    protected String backend()
    {
        return "io_uring";
    }

    /**
     * Large READs on the io_uring loop over the io_uring file go from the file to the socket by
     * splice: nbdcopy with 4 MiB requests on 4 connections and qemu-img compare read the image right
     * (a hole in the middle too), and the connections' close lines count the spliced READs; with
     * {@code --splice-min 0} none is, and the copy is the same.
     */
    @Test
    void largeReadsAreSplicedFromTheFileToTheSocket()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        Path image = dir.resolve("spliced.img");
        writeRandom(image, 64 * MIB, 23);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE)) {
            channel.write(ByteBuffer.allocate((int) (8 * MIB)), 24 * MIB + 4096);
        }
        String socket = dir.resolve("nbd.sock").toString();
        for (String spliceMin : new String[] {"128K", "0"}) {
            JloopProcess server = serve("--socket", socket, "--nbd-loop", "io_uring", "--splice-min", spliceMin, image.toString());
            Path copy = dir.resolve("copy-" + spliceMin + ".bin");
            Exec.check(300, "nbdcopy", "--request-size=4194304", "--connections=4", "--threads=4", server.uri(), copy.toString());
            assertEquals(-1, Files.mismatch(image, copy), "splice-min " + spliceMin + ": the copy differs");
            Exec compare = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", image.toString(), server.uri());
            assertEquals(0, compare.exitCode(), compare.stdout() + compare.stderr());
            assertEquals(0, server.stop(), server.log());
            long spliced = 0;
            Matcher matcher = SPLICED.matcher(server.log());
            while (matcher.find()) {
                spliced += Long.parseLong(matcher.group(1));
            }
            if (spliceMin.equals("0")) {
                assertEquals(0, spliced, server.log());
            }
            else {
                // 56 MiB of data in 4 MiB requests by nbdcopy, and qemu-img's reads
                assertTrue(spliced >= 14, "READs spliced: " + spliced + "\n" + server.log());
            }
            assertFalse(server.log().contains("cannot send a spliced READ"), server.log());
        }
    }

    /**
     * Large WRITEs on the io_uring loop over the io_uring file go from the socket into the file by
     * splice: nbdcopy writes an image in with 4 MiB requests on 4 connections, over the Unix socket and
     * over TCP, the target is the image byte for byte (and qemu-img compare agrees through the server),
     * and the connections' close lines count the spliced WRITEs.
     */
    @Test
    void largeWritesAreSplicedFromTheSocketIntoTheFile()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        Path image = dir.resolve("source.img");
        writeRandom(image, 64 * MIB, 29);
        for (String transport : new String[] {"unix", "tcp"}) {
            Path target = dir.resolve("target-" + transport + ".img");
            try (FileChannel channel = FileChannel.open(target, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
                channel.truncate(0);
                channel.write(ByteBuffer.allocate(1), 64 * MIB - 1);
            }
            JloopProcess server = transport.equals("unix")
                    ? serve("--socket", dir.resolve("nbd.sock").toString(), "--nbd-loop", "io_uring", "--splice-write-min", "512K", target.toString())
                    : serve("--listen", "127.0.0.1:0", "--nbd-loop", "io_uring", "--splice-write-min", "512K", target.toString());
            Exec.check(300, "nbdcopy", "--request-size=4194304", "--connections=4", "--threads=4", image.toString(), server.uri());
            Exec compare = Exec.run(300, "qemu-img", "compare", "-f", "raw", "-F", "raw", image.toString(), server.uri());
            assertEquals(0, compare.exitCode(), compare.stdout() + compare.stderr());
            assertEquals(0, server.stop(), server.log());
            assertEquals(-1, Files.mismatch(image, target), transport + ": the target differs from the image");
            long spliced = 0;
            Matcher matcher = SPLICED_WRITES.matcher(server.log());
            while (matcher.find()) {
                spliced += Long.parseLong(matcher.group(1));
            }
            // 64 MiB of data in 4 MiB requests
            assertTrue(spliced >= 16, transport + ": WRITEs spliced: " + spliced + "\n" + server.log());
        }
    }
}
