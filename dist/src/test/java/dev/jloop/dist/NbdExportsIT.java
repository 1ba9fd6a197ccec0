package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Several exports from one {@code jloop serve}: listed, each with its own size, read-only flag and description. */
class NbdExportsIT
        extends AbstractJloopIT
{
    @Test
    void listAndServeEachExport()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        CiAssumptions.assumeCommand("nbdcopy");
        Path main = dir.resolve("main.img");
        Path iso = dir.resolve("boot, with comma.iso");
        Path scratch = dir.resolve("scratch.img");
        byte[] isoContent = randomBytes(1 << 20, 5);
        Files.write(iso, isoContent);
        Path socket = dir.resolve("nbd.sock");
        try (JloopProcess server = JloopProcess.serve(dir, "--socket", socket.toString(), "--size", "8M", // FILE's size only
                "--export", "main", main.toString(),
                "--export", "iso=" + iso.toString().replace(",", ",,") + ",read-only,description=Installer,, disc 1",
                "--export", "scratch=" + scratch + ",size=2M")) {
            assertTrue(server.uri().endsWith("nbd+unix:///main?socket=" + socket), server.uri());
            String base = "nbd+unix:///%s?socket=" + socket;

            String list = Exec.check(60, "nbdinfo", "--list", "--json", String.format(base, ""));
            List<String> names = List.of("main", "iso", "scratch");
            int previous = -1;
            for (String name : names) {
                int at = list.indexOf("\"export-name\": \"" + name + "\"");
                assertTrue(at > previous, name + " missing or out of order in " + list);
                previous = at;
            }
            assertTrue(list.contains("\"description\": \"Installer, disc 1\""), list);

            String mainInfo = Exec.check(60, "nbdinfo", "--json", String.format(base, "main"));
            assertEquals(8L << 20, Long.parseLong(jsonValue(mainInfo, "export-size")), mainInfo);
            assertEquals("false", jsonValue(mainInfo, "is_read_only"), mainInfo);
            assertEquals("main.img (8 MiB)", jsonValue(mainInfo, "description"), mainInfo);

            String isoInfo = Exec.check(60, "nbdinfo", "--json", String.format(base, "iso"));
            assertEquals(1L << 20, Long.parseLong(jsonValue(isoInfo, "export-size")), isoInfo);
            assertEquals("true", jsonValue(isoInfo, "is_read_only"), isoInfo);
            assertEquals("Installer, disc 1", jsonValue(isoInfo, "description"), isoInfo);

            String scratchInfo = Exec.check(60, "nbdinfo", "--json", String.format(base, "scratch"));
            assertEquals(2L << 20, Long.parseLong(jsonValue(scratchInfo, "export-size")), scratchInfo);

            // the empty name is the first export
            String defaultInfo = Exec.check(60, "nbdinfo", "--json", String.format(base, ""));
            assertEquals(8L << 20, Long.parseLong(jsonValue(defaultInfo, "export-size")), defaultInfo);

            // data goes to the export asked for
            Exec.check(120, "nbdcopy", iso.toString(), String.format(base, "scratch"));
            Path back = dir.resolve("back.img");
            Exec.check(120, "nbdcopy", String.format(base, "iso"), back.toString());
            assertArrayEquals(isoContent, Files.readAllBytes(back));

            Exec readOnly = Exec.run(60, "nbdcopy", scratch.toString(), String.format(base, "iso"));
            assertNotEquals(0, readOnly.exitCode(), "writing to a read-only export must fail");

            // NBD_REP_ERR_UNKNOWN, which libnbd reports as ENOENT
            Exec unknown = Exec.run(60, "nbdinfo", String.format(base, "nope"));
            assertNotEquals(0, unknown.exitCode(), unknown.stdout());
            assertTrue(unknown.stderr().contains("No such file or directory for export: nope"), unknown.stderr());
            assertEquals(0, server.stop(), server.log());
        }
        byte[] scratchContent = Files.readAllBytes(scratch);
        assertEquals(2 << 20, scratchContent.length);
        assertArrayEquals(isoContent, java.util.Arrays.copyOf(scratchContent, 1 << 20));
        assertArrayEquals(isoContent, Files.readAllBytes(iso), "the read-only export is untouched");
    }

    @Test
    void exportsWithoutThePositionalFile()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        Path a = dir.resolve("a.img");
        Path b = dir.resolve("b.img");
        try (JloopProcess server = JloopProcess.serve(dir, "--listen", "127.0.0.1:0", "--export", "a=" + a + ",size=1M",
                "--export", "b=" + b + ",size=3M")) {
            String port = port(server);
            String list = Exec.check(60, "nbdinfo", "--list", "nbd://127.0.0.1:" + port + "/");
            assertTrue(list.contains("export=\"a\"") && list.contains("export=\"b\""), list);
            assertEquals(String.valueOf(3 << 20), Exec.check(60, "nbdinfo", "--size", "nbd://127.0.0.1:" + port + "/b").trim());
            assertEquals(String.valueOf(1 << 20), Exec.check(60, "nbdinfo", "--size", "nbd://127.0.0.1:" + port + "/").trim());
            assertEquals(0, server.stop(), server.log());
        }
    }

    @Test
    void mistakesAreOneLineErrors()
            throws Exception
    {
        Path a = dir.resolve("a.img");
        Files.write(a, new byte[4096]);
        assertOneLineError(serveOnLoopback("--export", "x=" + a + ",colour=blue"), "--export x: colour is an option of none of the chosen backend and filters");
        assertOneLineError(serveOnLoopback("--export", "x=" + a + ",size=lots"), "bad size 'lots'");
        assertOneLineError(serveOnLoopback("--export", "x="), "no file after 'x='");
        assertOneLineError(serveOnLoopback("--export", "x=" + a, "--export", "x=" + a), "two exports are named 'x'");
        assertOneLineError(serveOnLoopback("--export", "lonely"), "no FILE is given");
        assertOneLineError(serveOnLoopback(), "nothing to serve");
        assertOneLineError(serveOnLoopback("--export", "one", "--export", "two", a.toString()), "--export NAME given 2 times");
        assertOneLineError(serveOnLoopback("--export", "x=" + dir.resolve("missing.img")), "no such file (add size=SIZE to its --export to create it)");
        assertOneLineError(serveOnLoopback("--size", "1M", "--export", "x=" + a), "no FILE is given");
    }

    private static Exec serveOnLoopback(String... args)
    {
        List<String> all = new ArrayList<>(List.of("serve", "--listen", "127.0.0.1:0"));
        all.addAll(List.of(args));
        return jloop(all.toArray(String[]::new));
    }
}
