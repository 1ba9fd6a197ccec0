package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jloop serve --filter cow} with real NBD clients: the file is never written, what was written
 * reads back, a kept overlay ({@code --cow-file}) is continued by the next serve and
 * {@code jloop commit} writes it into the file.
 */
class CowFilterIT
        extends AbstractJloopIT
{
    private static final int SIZE = 16 << 20;

    private Path base;
    private byte[] original;

    @BeforeEach
    void setUp()
            throws IOException
    {
        base = dir.resolve("base.img");
        original = randomBytes(SIZE, 1);
        Files.write(base, original);
    }

    @Test
    void writesGoToTheOverlayAndTheFileStaysAsItWas()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("nbdinfo");
        Path written = image("written.img", 2);
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--filter", "cow", base.toString())) {
            assertTrue(server.startLine().contains("filters cow"), server.startLine());
            String info = Exec.check(60, "nbdinfo", "--json", server.uri());
            assertEquals("false", jsonValue(info, "is_read_only"), "writable over a file opened read-only: " + info);
            assertEquals(SIZE, Long.parseLong(jsonValue(info, "export-size")), info);

            Exec.check(120, "nbdcopy", written.toString(), server.uri());
            Path back = dir.resolve("back.img");
            Exec.check(120, "nbdcopy", server.uri(), back.toString());
            assertArrayEquals(Files.readAllBytes(written), Files.readAllBytes(back), "what was written reads back");
            assertEquals(0, server.stop(), server.log());
        }
        assertArrayEquals(original, Files.readAllBytes(base), "the file below, byte for byte");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--filter", "cow", base.toString())) {
            Path again = dir.resolve("again.img");
            Exec.check(120, "nbdcopy", server.uri(), again.toString());
            assertArrayEquals(original, Files.readAllBytes(again), "a temporary overlay is gone with the server that made it");
            assertEquals(0, server.stop(), server.log());
        }
    }

    @Test
    void keptOverlayIsContinuedThenCommittedIntoTheFile()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        CiAssumptions.assumeCommand("qemu-io");
        Path written = image("written.img", 3);
        byte[] expected = Files.readAllBytes(written);
        Path overlay = dir.resolve("base.overlay");
        Path socket = dir.resolve("nbd.sock");
        String[] serve = {"--socket", socket.toString(), "--filter", "cow", "--cow-file", overlay.toString(), base.toString()};
        try (JloopProcess server = JloopProcess.serve(dir, serve)) {
            Exec.check(120, "nbdcopy", written.toString(), server.uri());
            assertEquals(0, server.stop(), server.log());
        }
        assertArrayEquals(original, Files.readAllBytes(base), "the file below, byte for byte");
        assertTrue(Files.exists(overlay) && Files.exists(dir.resolve("base.overlay.map")), "the overlay is kept");

        try (JloopProcess server = JloopProcess.serve(dir, serve)) {
            Path back = dir.resolve("back.img");
            Exec.check(120, "nbdcopy", server.uri(), back.toString());
            assertArrayEquals(expected, Files.readAllBytes(back), "the next serve continues the overlay");
            // unaligned, inside blocks that are still the file's: copied up, then changed
            Exec.check(60, "qemu-io", "-f", "raw", "-c", "write -P 0x55 1000 3000", "-c", "write -z 40000 70000", server.uri());
            assertEquals(0, server.stop(), server.log());
        }
        Arrays.fill(expected, 1000, 4000, (byte) 0x55);
        Arrays.fill(expected, 40000, 110000, (byte) 0);
        Path expectedImage = Files.write(dir.resolve("expected.img"), expected);

        Exec commit = Exec.run(120, JloopProcess.command("commit", "--cow-file", overlay.toString(), base.toString()).toArray(String[]::new));
        assertEquals(0, commit.exitCode(), commit.stdout() + commit.stderr());
        assertTrue(commit.stdout().startsWith("jloop: committed "), commit.stdout());
        Exec.check(120, "qemu-img", "compare", "-f", "raw", "-F", "raw", base.toString(), expectedImage.toString());
        assertFalse(Files.exists(overlay), "the overlay is removed");
        assertFalse(Files.exists(dir.resolve("base.overlay.map")));

        Exec again = jloop("commit", "--cow-file", overlay.toString(), base.toString());
        assertEquals(1, again.exitCode(), again.stdout() + again.stderr());
        assertTrue(again.stderr().startsWith("jloop: cannot commit " + overlay + " into " + base + ": no overlay at "), again.stderr());
    }

    @Test
    void aKeptOverlayBelongsToItsFile()
            throws Exception
    {
        Path overlay = dir.resolve("base.overlay");
        try (JloopProcess server = JloopProcess.serve(dir, "--listen", "127.0.0.1:0", "--filter", "cow", "--cow-file", overlay.toString(), base.toString())) {
            assertEquals(0, server.stop(), server.log());
        }
        Path other = Files.write(dir.resolve("other.img"), new byte[SIZE / 2]);
        Exec refused = jloop("serve", "--listen", "127.0.0.1:0", "--filter", "cow", "--cow-file", overlay.toString(),
                other.toString());
        assertNotEquals(0, refused.exitCode());
        assertTrue(refused.stderr().contains("was made for a disk of " + SIZE + " bytes, not " + SIZE / 2), refused.stderr());
    }

    /** A random image with zeros here and there, which nbdcopy sends as zeroing. */
    private Path image(String name, long seed)
            throws IOException
    {
        byte[] content = randomBytes(SIZE, seed);
        Arrays.fill(content, 1 << 20, 3 << 20, (byte) 0);
        Arrays.fill(content, (5 << 20) + 100, (5 << 20) + 70_000, (byte) 0);
        Arrays.fill(content, SIZE - (1 << 20), SIZE, (byte) 0);
        return Files.write(dir.resolve(name), content);
    }
}
