package dev.jloop.dist;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@code jloop serve --frontend ublk} where the kernel has no ublk driver (these build machines): the
 * options are known and checked, and the user is told which module to load. The ublk frontend against
 * a real driver is tested in a VM ({@code src/test/vm/ublk-scenario.sh}).
 */
class UblkCommandIT
        extends AbstractJloopIT
{
    @Test
    void helpListsTheUblkOptions()
    {
        Exec help = jloop("serve", "--help");
        assertEquals(0, help.exitCode());
        for (String option : List.of("ublk", "--queues", "--ublk-id", "--queue-depth", "--recover", "--no-recovery")) {
            assertTrue(help.stdout().contains(option), option + " missing from help:\n" + help.stdout());
        }
    }

    @Test
    void withoutTheDriverSaysWhichModuleToLoad()
    {
        assumeTrue(Files.notExists(Path.of("/dev/ublk-control")), "this kernel has ublk_drv loaded");
        Exec result = jloop("serve", "--frontend", "ublk", "--backend", "sync", "--size", "1M", dir.resolve("a.img").toString());
        assertOneLineError(result, "modprobe ublk_drv");
        assertTrue(result.stderr().contains("Linux 6.0"), result.stderr());
    }

    @Test
    void badUblkOptionsAreRefusedBeforeTheKernelIsAsked()
    {
        assertOneLineError(jloop("serve", "--frontend", "ublk", "--backend", "sync", "--queues", "0", "--size", "1M",
                dir.resolve("a.img").toString()), "ublk queues must be from 1 to 4096: 0");
        assertOneLineError(jloop("serve", "--frontend", "ublk", "--backend", "sync", "--ublk-id", "-2", "--size", "1M",
                dir.resolve("a.img").toString()), "--ublk-id: bad number '-2': expected a whole number, 0 or more (e.g. --frontend ublk --ublk-id 3 disk.img)");
        assertOneLineError(jloop("serve", "--frontend", "ublk", "--backend", "sync", "--queue-depth", "5000", "--size", "1M",
                dir.resolve("a.img").toString()), "ublk queue depth must be from 1 to 4096: 5000");
    }

    @Test
    void ublkOptionsWithNbdAreRefusedAndQueueDepthStillWorks()
            throws Exception
    {
        assertOneLineError(jloop("serve", "--backend", "sync", "--queues", "2", "--size", "1M", dir.resolve("a.img").toString()),
                "--queues applies to the ublk frontend only, and the backend is 'sync' and the frontend 'nbd'");
        assertOneLineError(jloop("serve", "--backend", "sync", "--ublk-id", "2", "--size", "1M", dir.resolve("a.img").toString()),
                "--ublk-id applies to the ublk frontend only");
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when an option is refused");
        try (JloopProcess server = JloopProcess.serve(dir, "--backend", "sync", "--queue-depth", "8", "--listen", "127.0.0.1:0",
                "--size", "1M", dir.resolve("b.img").toString())) {
            assertTrue(server.uri().startsWith("nbd://127.0.0.1:"), server.uri());
        }
    }

    @Test
    void nbdOnlyOptionsAreRefusedWithUblkRatherThanIgnored()
    {
        String image = dir.resolve("a.img").toString();
        List<List<String>> nbdOnly = List.of(
                List.of("--tls-cert", "server-cert.pem"),
                List.of("--tls-key", "server-key.pem"),
                List.of("--tls-ca", "ca-cert.pem"),
                List.of("--tls-certificates", "pki"),
                List.of("--tls-verify-peer"),
                List.of("--tls-engine", "jdk"),
                List.of("--handshake-timeout", "30"),
                List.of("--reply-timeout", "30"));
        for (List<String> option : nbdOnly) {
            List<String> args = new java.util.ArrayList<>(List.of("serve", "--frontend", "ublk", "--backend", "sync", "--size", "1M"));
            args.addAll(option);
            args.add(image);
            assertOneLineError(jloop(args.toArray(String[]::new)), option.get(0) + " applies to the nbd frontend only");
        }
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when an option is refused");
    }

    @Test
    void socketActivationIsRefusedWithUblk()
    {
        // as systemd starts it: LISTEN_PID names the process bin/jloop becomes, descriptor 3 is the socket
        List<String> command = new java.util.ArrayList<>(List.of("sh", "-c", "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$@\" 3</dev/null", "sh"));
        command.addAll(JloopProcess.command("serve", "--frontend", "ublk", "--backend", "sync", "--size", "1M", dir.resolve("a.img").toString()));
        Exec result = Exec.run(60, null, Map.of(), command.toArray(String[]::new));
        assertOneLineError(result, "started by socket activation (LISTEN_FDS), but --frontend ublk serves no socket");
    }

    @Test
    void recoverOptionsThatContradictAreRefusedBeforeTheKernelIsAsked()
    {
        String image = dir.resolve("a.img").toString();
        assertOneLineError(jloop("serve", "--frontend", "ublk", "--backend", "sync", "--recover", "1", "--ublk-id", "2", "--size", "1M", image),
                "--recover 1 and --ublk-id 2 name two devices");
        assertOneLineError(jloop("serve", "--frontend", "ublk", "--backend", "sync", "--recover", "1", "--no-recovery", "--size", "1M", image),
                "--recover and --no-recovery exclude each other");
        assertOneLineError(jloop("serve", "--backend", "sync", "--recover", "1", "--size", "1M", image), "--recover applies to the ublk frontend only");
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when an option is refused");
    }

    @Test
    void ublkCommandsWithoutTheDriverSayWhichModuleToLoad()
    {
        assumeTrue(Files.notExists(Path.of("/dev/ublk-control")), "this kernel has ublk_drv loaded");
        assertOneLineError(jloop("ublk", "list"), "/dev/ublk-control does not exist: the ublk_drv kernel module is not loaded (modprobe ublk_drv)");
        assertOneLineError(jloop("ublk", "del", "0"), "/dev/ublk-control does not exist: the ublk_drv kernel module is not loaded (modprobe ublk_drv)");
        assertOneLineError(jloop("ublk", "recover", "0"), "/dev/ublk-control does not exist: the ublk_drv kernel module is not loaded (modprobe ublk_drv)");
        Exec help = jloop("ublk", "--help");
        assertEquals(0, help.exitCode());
        for (String command : List.of("list", "del", "recover")) {
            assertTrue(help.stdout().contains(command), command + " missing from help:\n" + help.stdout());
        }
        Exec bad = jloop("ublk", "del", "x");
        assertEquals(2, bad.exitCode(), bad.stderr());
    }
}
