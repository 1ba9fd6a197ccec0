package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static dev.jloop.dist.NbdTlsIT.randomBytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code --filter rate}: a copy over several connections shares the export's one limit. */
class NbdRateFilterIT
{
    private Path dir;

    @BeforeEach
    void setUp()
            throws IOException
    {
        Path base = Path.of("target", "it-tmp").toAbsolutePath();
        Files.createDirectories(base);
        dir = Files.createTempDirectory(base, "rate");
    }

    @AfterEach
    void tearDown()
    {
        Exec.run(30, "rm", "-rf", dir.toString());
    }

    @Test
    void aCopyOverFourConnectionsGoesAtTheExportsRate()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path source = dir.resolve("source.img");
        byte[] content = randomBytes(8 << 20, 11);
        Files.write(source, content);
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        // 16M bits/s is 2 MiB/s: 8 MiB take 4 s, or 3 s after the default burst of 1 s
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "8M", "--filter", "rate:rate=16M", image.toString())) {
            assertTrue(server.startLine().contains("rate"), server.startLine());
            long start = System.nanoTime();
            Exec.check(120, "nbdcopy", "--connections=4", source.toString(), server.uri());
            long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(millis >= 2700 && millis < 12_000, "8 MiB at 2 MiB/s over 4 connections took " + millis + " ms, expected about 3000");
            assertEquals(0, server.stop(), server.log());
        }
        assertArrayEquals(content, Files.readAllBytes(image));
    }
}
