package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static dev.jloop.dist.NbdTlsIT.assertOneLineError;
import static dev.jloop.dist.NbdTlsIT.randomBytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Filters as a user stacks them, seen by clients nobody here wrote (qemu-io, nbdcopy, nbdinfo). */
class FiltersIT
{
    private Path dir;

    @BeforeEach
    void setUp()
            throws IOException
    {
        Path base = Path.of("target", "it-tmp").toAbsolutePath();
        Files.createDirectories(base);
        dir = Files.createTempDirectory(base, "filters");
    }

    @AfterEach
    void tearDown()
    {
        Exec.run(30, "rm", "-rf", dir.toString());
    }

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

    @Test
    void filterMistakesAreOneLineErrors()
    {
        Path image = dir.resolve("a.img");
        assertOneLineError(Exec.run(60, JloopProcess.command("serve", "--filter", "nope", "--size", "1M", image.toString()).toArray(String[]::new)),
                "unknown filter 'nope'; known filters: ");
        assertOneLineError(Exec.run(60, JloopProcess.command("serve", "--filter", "error:error=EWHAT", "--size", "1M", image.toString()).toArray(String[]::new)),
                "--error: unknown errno 'EWHAT'");
        assertOneLineError(Exec.run(60, JloopProcess.command("serve", "--error-rate", "0.5", "--size", "1M", image.toString()).toArray(String[]::new)),
                "--error-rate applies to the error filter only");
        assertFalse(Files.exists(image), "nothing is created when an option is wrong");
    }
}
