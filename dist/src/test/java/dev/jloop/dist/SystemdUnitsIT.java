package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The systemd units of the distribution ({@code systemd/}): systemd itself finds nothing wrong in
 * them, the NBD pair serves through socket activation exactly as its ExecStart says, and the ublk
 * unit's command is one jloop understands. (Recovery by that command is proven in the VM:
 * {@code ublk-recovery-scenario.sh}.)
 */
class SystemdUnitsIT
        extends AbstractJloopIT
{
    private static final List<String> UNITS = List.of("jloop-ublk@.service", "jloop-nbd.socket", "jloop-nbd.service");

    /** The unit as it would be installed with the distribution in /opt/jloop, pointed at this build instead. */
    private String unit(String name)
            throws IOException
    {
        Path file = JloopProcess.home().resolve("systemd").resolve(name);
        assertTrue(Files.isRegularFile(file), "the distribution lacks " + file);
        return Files.readString(file).replace("/opt/jloop/", JloopProcess.home() + "/");
    }

    private static String value(String unit, String key)
    {
        return unit.lines().filter(line -> line.startsWith(key + "=")).map(line -> line.substring(key.length() + 1)).findFirst()
                .orElseThrow(() -> new AssertionError("no " + key + "= in\n" + unit));
    }

    /** ExecStart of a unit with its variables set as systemd would from the environment file. */
    private static List<String> execStart(String unit, String instance, String args)
    {
        List<String> command = new ArrayList<>();
        for (String word : value(unit, "ExecStart").replace("%i", instance).split(" ")) {
            if (word.equals("$JLOOP_ARGS")) {
                command.addAll(List.of(args.split(" ")));
            }
            else {
                command.add(word);
            }
        }
        return command;
    }

    @Test
    void systemdFindsNothingWrong()
            throws IOException
    {
        CiAssumptions.assumeCommand("systemd-analyze");
        List<String> command = new ArrayList<>(List.of("systemd-analyze", "verify", "--man=no"));
        for (String name : UNITS) {
            Files.writeString(dir.resolve(name), unit(name));
            command.add("./" + name.replace("@.", "@0."));
        }
        Exec verify = Exec.run(60, dir, Map.of(), command.toArray(String[]::new));
        assertEquals(0, verify.exitCode(), verify.stderr());
        // unknown keys and bad values are only warnings for systemd: none are allowed here
        assertEquals("", verify.stderr().strip(), "systemd-analyze verify warned");
        assertEquals("on-failure", value(unit("jloop-ublk@.service"), "Restart"));
    }

    @Test
    void theNbdPairServesThroughSocketActivation()
            throws Exception
    {
        CiAssumptions.assumeCommand("systemd-socket-activate");
        CiAssumptions.assumeCommand("nbdinfo");
        String socket = unit("jloop-nbd.socket");
        assertEquals("127.0.0.1:10809", value(socket, "ListenStream"));
        int port;
        try (ServerSocket free = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = free.getLocalPort();
        }
        Path image = dir.resolve("disk.img");
        Files.write(image, randomBytes(1 << 20, 5));
        List<String> command = new ArrayList<>(List.of("systemd-socket-activate", "-l", "127.0.0.1:" + port));
        command.addAll(execStart(unit("jloop-nbd.service"), "", "--backend sync " + image));
        Process server = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(dir.resolve("server.log").toFile()).start();
        try {
            // systemd-socket-activate binds the port after it has started: until then a client is refused
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            Exec info = Exec.run(60, "nbdinfo", "--size", "nbd://127.0.0.1:" + port + "/");
            while (info.exitCode() != 0 && info.stderr().contains("Connection refused") && System.nanoTime() < deadline) {
                Thread.sleep(100);
                info = Exec.run(60, "nbdinfo", "--size", "nbd://127.0.0.1:" + port + "/");
            }
            assertEquals(0, info.exitCode(), info.stderr() + Files.readString(dir.resolve("server.log")));
            assertEquals(Long.toString(1 << 20), info.stdout().strip());
            // a second client: the activated server stays for every later connection
            Exec again = Exec.run(60, "nbdinfo", "--size", "nbd://127.0.0.1:" + port + "/");
            assertEquals(0, again.exitCode(), again.stderr());
        }
        finally {
            server.destroy();
            assertTrue(server.waitFor(30, TimeUnit.SECONDS), "jloop did not stop on SIGTERM");
        }
        assertEquals(0, server.exitValue(), Files.readString(dir.resolve("server.log")));
    }

    @Test
    void theUblkUnitsCommandIsUnderstood()
            throws IOException
    {
        assumeTrue(Files.notExists(Path.of("/dev/ublk-control")), "this kernel has ublk_drv loaded");
        List<String> command = execStart(unit("jloop-ublk@.service"), "3", "--backend sync --size 1M " + dir.resolve("a.img"));
        assertEquals(List.of("serve", "--frontend", "ublk", "--recover", "3"), command.subList(1, 6));
        // every option is accepted; what stops it is the missing driver, said in one line
        assertOneLineError(Exec.run(60, command.toArray(String[]::new)), "modprobe ublk_drv");
    }
}
