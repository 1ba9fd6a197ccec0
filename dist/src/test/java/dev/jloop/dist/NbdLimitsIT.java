package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** --max-connections and --handshake-timeout as a user sets them, with nbdinfo and a client that says nothing. */
class NbdLimitsIT
        extends AbstractJloopIT
{
    @Test
    void aSilentClientHoldsTheOnlySlotUntilTheHandshakeTimeoutDropsIt()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        Path image = dir.resolve("disk.img");
        try (JloopProcess server = JloopProcess.serve(dir, "--listen", "127.0.0.1:0", "--size", "1M",
                "--max-connections", "1", "--handshake-timeout", "2", image.toString())) {
            int port = Integer.parseInt(port(server));
            String uri = "nbd://127.0.0.1:" + port + "/";
            try (Socket silent = new Socket()) {
                silent.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
                silent.setSoTimeout(30_000);
                InputStream in = silent.getInputStream();
                assertEquals(18, in.readNBytes(18).length, "greeting");
                long start = System.nanoTime();

                Exec refused = Exec.run(60, "nbdinfo", "--size", uri);
                assertNotEquals(0, refused.exitCode(), "the one slot is taken: " + refused.stdout());

                assertEquals(-1, in.read(), "dropped by the handshake timeout");
                long waitedMillis = (System.nanoTime() - start) / 1_000_000;
                assertTrue(waitedMillis >= 1500 && waitedMillis < 20_000, "dropped after " + waitedMillis + " ms");
            }
            assertEquals("1048576", Exec.check(60, "nbdinfo", "--size", uri).trim());
            assertEquals(0, server.stop(), server.log());
            assertTrue(server.log().contains("refused, already serving max-connections=1 clients"), server.log());
            assertTrue(server.log().contains("handshake not finished within 2000 ms"), server.log());
        }
    }

    @Test
    void badLimitsAreOneLineErrors()
    {
        Exec negative = Exec.run(60, JloopProcess.command("serve", "--max-connections", "-1", "--size", "1M",
                dir.resolve("a.img").toString()).toArray(String[]::new));
        assertOneLineError(negative, "--max-connections: bad number '-1': expected a whole number, 0 or more");
        Exec timeout = Exec.run(60, JloopProcess.command("serve", "--handshake-timeout", "-5", "--size", "1M",
                dir.resolve("a.img").toString()).toArray(String[]::new));
        assertOneLineError(timeout, "--handshake-timeout: bad duration '-5'");
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when the options are wrong");
    }
}
