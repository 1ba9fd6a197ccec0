package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The {@code jloop} command as a user meets it: help, version, one-line errors, TCP serving, SIGTERM. */
class JloopCommandIT
        extends AbstractJloopIT
{
    @Test
    void helpAndVersion()
    {
        Exec help = jloop("serve", "--help");
        assertEquals(0, help.exitCode());
        for (String option : List.of("--frontend", "--backend", "--listen", "--socket", "--export", "--read-only", "--direct", "--size")) {
            assertTrue(help.stdout().contains(option), option + " missing from help:\n" + help.stdout());
        }
        Exec version = jloop("--version");
        assertEquals(0, version.exitCode());
        assertTrue(version.stdout().startsWith("jloop 0."), version.stdout());
    }

    /**
     * bin/jloop's class-data sharing archive: made on the first start of a copy of the distribution,
     * it holds picocli's classes (compiled for Java 5, which a dynamic archive leaves out), and
     * {@code JLOOP_CDS=off} goes without it.
     */
    @Test
    void classDataSharingArchiveHoldsTheCommandLine()
            throws Exception
    {
        Path copy = dir.resolve("dist");
        for (String folder : List.of("bin", "lib")) {
            Files.createDirectories(copy.resolve(folder));
            try (var files = Files.list(JloopProcess.home().resolve(folder))) {
                for (Path file : (Iterable<Path>) files::iterator) {
                    if (!file.getFileName().toString().startsWith("jloop.jsa")) {
                        Files.copy(file, copy.resolve(folder).resolve(file.getFileName()), StandardCopyOption.COPY_ATTRIBUTES);
                    }
                }
            }
        }
        String bin = copy.resolve("bin/jloop").toString();
        Path image = dir.resolve("cds.img");
        Exec first = Exec.run(120, null, Map.of(), bin, "serve", "--socket", dir.resolve("s0").toString(), "--size", "1M", image.toString(), "--run", "true");
        assertEquals(0, first.exitCode(), first.stderr());
        assertTrue(Files.size(copy.resolve("lib/jloop.jsa")) > 0, "no archive after the first start");
        assertTrue(Files.readString(copy.resolve("lib/jloop.jsa.key")).contains(copy.toString()), "the archive's key names its distribution");

        for (boolean archive : new boolean[] {true, false}) {
            Path classes = dir.resolve("classes-" + archive + ".log");
            Exec run = Exec.run(60, null, Map.of("JLOOP_CDS", archive ? "on" : "off", "JLOOP_JAVA_OPTS", "-Xlog:class+load:file=" + classes),
                    bin, "serve", "--socket", dir.resolve("s-" + archive).toString(), image.toString(), "--run", "true");
            assertEquals(0, run.exitCode(), run.stderr());
            String picocli = Files.readAllLines(classes).stream()
                    .filter(line -> line.contains(" picocli.CommandLine source: "))
                    .findFirst().orElseThrow();
            assertEquals(archive, picocli.endsWith("source: shared objects file"), picocli);
        }
    }

    /**
     * bin/jloop's JVM defaults (the serial collector with a small, fixed young generation) and
     * JLOOP_JAVA_OPTS over them: its sizes win, and a collector named there goes without the young
     * generation fixed for the serial one.
     */
    @Test
    void jvmDefaultsAndTheirOverrides()
    {
        Map<String, String> defaults = jvmFlags("");
        assertEquals("true", defaults.get("UseSerialGC"), defaults.toString());
        assertEquals(String.valueOf(2 << 20), defaults.get("MaxNewSize"));
        assertEquals(String.valueOf(256 << 20), defaults.get("MaxHeapSize"));

        assertEquals(String.valueOf(8 << 20), jvmFlags("-Xmn8m").get("MaxNewSize"));

        Map<String, String> g1 = jvmFlags("-XX:+UseG1GC");
        assertEquals("true", g1.get("UseG1GC"));
        assertEquals("false", g1.get("UseSerialGC"));
        assertTrue(Long.parseLong(g1.get("MaxNewSize")) > 2 << 20, "G1 sizes its young generation itself: " + g1.get("MaxNewSize"));
    }

    /** The JVM's final flags under bin/jloop with {@code JLOOP_JAVA_OPTS=options}, by name. */
    private static Map<String, String> jvmFlags(String options)
    {
        Exec run = Exec.run(60, null, Map.of("JLOOP_JAVA_OPTS", options + " -XX:+PrintFlagsFinal"), JloopProcess.command("--version").toArray(String[]::new));
        assertEquals(0, run.exitCode(), run.stderr());
        Map<String, String> flags = new HashMap<>();
        // "     bool UseSerialGC                              = true                {product} {command line}"
        Matcher line = Pattern.compile("(?m)^\\s*\\S+\\s+(\\w+)\\s+:?=\\s+(\\S+)").matcher(run.stdout());
        while (line.find()) {
            flags.put(line.group(1), line.group(2));
        }
        assertTrue(flags.containsKey("UseSerialGC"), run.stdout());
        return flags;
    }

    /**
     * What a start spends on native bindings: jffi's JNI stub (under jnr-ffi, which binds libc and
     * liburing) is loaded from the distribution's lib/jni, not copied out of its jar into a temporary
     * file first; and a server on io_uring never binds the libc calls it does not make (LibCIo: the
     * sync and nio backends' I/O, which their interop tests exercise).
     */
    @Test
    void nativeBindingsOfAStart()
            throws Exception
    {
        Path libraries = dir.resolve("libraries.log");
        Path classes = dir.resolve("classes.log");
        Exec run = Exec.run(60, null, Map.of("JLOOP_JAVA_OPTS", "-Xlog:library=info:file=" + libraries + " -Xlog:class+load=info:file=" + classes),
                JloopProcess.command("serve", "--backend", "io_uring", "--socket", dir.resolve("s").toString(), "--size", "1M",
                        dir.resolve("native.img").toString(), "--run", "true").toArray(String[]::new));
        assertEquals(0, run.exitCode(), run.stdout() + run.stderr());
        List<String> loaded = Files.readAllLines(libraries).stream()
                .filter(line -> line.contains("Loaded library ") && line.contains("jffi"))
                .toList();
        assertEquals(1, loaded.size(), String.join("\n", loaded));
        // the directory bin/jloop chose by the machine's architecture (uname -m); CI runs on x86-64
        assertTrue(loaded.get(0).contains("/lib/jni/x86_64-Linux/libjffi-"), loaded.get(0));

        List<String> bound = Files.readAllLines(classes).stream().filter(line -> line.contains("$jnr$ffi$")).toList();
        assertTrue(bound.stream().anyMatch(line -> line.contains(" dev.jloop.posix.LibC$jnr$ffi$")), String.join("\n", bound));
        assertTrue(bound.stream().noneMatch(line -> line.contains(" dev.jloop.posix.LibCIo")), String.join("\n", bound));
    }

    @Test
    void missingFileWithoutSize()
    {
        Exec result = jloop("serve", "--backend", "sync", dir.resolve("nope.img").toString());
        assertOneLineError(result, "no such file (add --size SIZE to create it)");
    }

    @Test
    void badSize()
    {
        Exec result = jloop("serve", "--backend", "sync", "--size", "12X", dir.resolve("a.img").toString());
        assertOneLineError(result, "bad size '12X'");
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created on a bad size");
    }

    @Test
    void tlsCaWithoutPeerVerificationIsRefused()
    {
        Exec result = jloop("serve", "--backend", "sync", "--tls", "require", "--tls-certificates", dir.toString(),
                "--tls-ca", dir.resolve("ca-cert.pem").toString(), "--size", "1M", dir.resolve("a.img").toString());
        assertOneLineError(result, "add --tls-verify-peer");
        assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when an option is refused");
    }

    @Test
    void sqpollWithoutIoUringIsRefused()
    {
        for (String backend : List.of("sync", "nio")) {
            Exec result = jloop("serve", "--backend", backend, "--uring-sqpoll", "--size", "1M", dir.resolve("a.img").toString());
            assertOneLineError(result, "--uring-sqpoll applies to the io_uring backend only, and the backend is '" + backend + "'");
            assertTrue(result.stderr().contains("the frontend 'nbd'"), result.stderr());
            assertTrue(Files.notExists(dir.resolve("a.img")), "nothing is created when an option is refused");
        }
    }

    @Test
    void unknownBackendListsTheKnownOnes()
    {
        Exec result = jloop("serve", "--backend", "nope", "--size", "1M", dir.resolve("a.img").toString());
        assertOneLineError(result, "unknown backend 'nope'; known backends: ");
        assertTrue(result.stderr().contains("nio") && result.stderr().contains("sync"), result.stderr());
    }

    @Test
    void portInUse()
            throws Exception
    {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Exec result = jloop("serve", "--backend", "sync", "--size", "1M", "--listen", "127.0.0.1:" + taken.getLocalPort(),
                    dir.resolve("a.img").toString());
            assertOneLineError(result, "cannot listen on 127.0.0.1:" + taken.getLocalPort());
        }
    }

    @Test
    void servesOnTcpAndStopsCleanlyOnSigterm()
            throws Exception
    {
        CiAssumptions.assumeCommand("qemu-io");
        CiAssumptions.assumeCommand("nbdinfo");
        Path image = dir.resolve("tcp.img");
        try (JloopProcess server = JloopProcess.serve(dir, "--listen", "127.0.0.1:0", "--size", "8M", "--export", "disk", image.toString())) {
            assertTrue(server.uri().matches("nbd://127\\.0\\.0\\.1:\\d+/disk"), server.uri());
            assertTrue(server.startLine().contains("frontend nbd"), server.startLine());
            String json = Exec.check(30, "nbdinfo", "--json", server.uri());
            assertEquals(8L << 20, jsonNumber(json, "export-size"), json);
            Exec.check(60, "qemu-io", "-f", "raw", "-c", "write -P 0x77 1M 1M", server.uri());
            assertEquals(0, server.stop(), server.log());
        }
        byte[] data = Files.readAllBytes(image);
        for (int i = 1 << 20; i < 2 << 20; i++) {
            assertEquals((byte) 0x77, data[i], "byte " + i);
        }
    }

    /**
     * A client that stops reading its replies holds a clean stop up to the close timeout; a second
     * SIGTERM then ends jloop at once (Ctrl-C twice), with one line saying so.
     */
    @Test
    void secondSigtermWhileStoppingExitsAtOnce()
            throws Exception
    {
        Path image = dir.resolve("stuck.img");
        try (JloopProcess server = JloopProcess.serve(dir, "--backend", "sync", "--listen", "127.0.0.1:0", "--size", "64M", image.toString());
                Socket client = new Socket()) {
            Matcher port = Pattern.compile(":(\\d+)/").matcher(server.uri());
            assertTrue(port.find(), server.uri());
            client.setReceiveBufferSize(4096);
            client.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), Integer.parseInt(port.group(1))));
            DataOutputStream out = new DataOutputStream(client.getOutputStream());
            DataInputStream in = new DataInputStream(client.getInputStream());
            // fixed newstyle with NO_ZEROES, then NBD_OPT_EXPORT_NAME of the default export
            in.readFully(new byte[18]);
            out.writeInt(3);
            out.writeLong(0x49484156454F5054L);
            out.writeInt(1);
            out.writeInt(0);
            out.flush();
            assertEquals(64L << 20, in.readLong());
            in.readShort();
            // READs of 1 MiB whose replies are never read: the replies fill the socket and stay there
            for (int i = 0; i < 64; i++) {
                out.writeInt(0x25609513);
                out.writeShort(0);
                out.writeShort(0);
                out.writeLong(i);
                out.writeLong((long) i << 20);
                out.writeInt(1 << 20);
            }
            out.flush();
            Thread.sleep(1000);
            server.terminate();
            assertTrue(server.awaitExit(Duration.ofSeconds(2)).isEmpty(), "a clean stop waits for the client's replies");
            server.terminate();
            OptionalInt exitCode = server.awaitExit(Duration.ofSeconds(10));
            assertTrue(exitCode.isPresent(), "the second SIGTERM did not end jloop within 10 s\n" + server.log());
            assertEquals(128 + 15, exitCode.getAsInt(), server.log());
            assertTrue(server.log().contains("jloop: SIGTERM again while stopping: exiting now"), server.log());
        }
    }

    /**
     * With io_uring switched off by the kernel ({@code kernel.io_uring_disabled=2}), asking for it is
     * a clear error and {@code auto} falls back to nio, saying why.
     */
    @Test
    void autoFallsBackWhenTheKernelDisablesIoUring()
            throws Exception
    {
        Path sysctl = Path.of("/proc/sys/kernel/io_uring_disabled");
        CiAssumptions.assumeAvailable(Files.isWritable(sysctl), "needs root and a kernel with kernel.io_uring_disabled (6.6+)");
        String before = Files.readString(sysctl).trim();
        Files.writeString(sysctl, "2");
        try {
            Exec refused = jloop("serve", "--backend", "io_uring", "--size", "1M", dir.resolve("a.img").toString());
            assertOneLineError(refused, "backend 'io_uring' is not available here: ");
            assertTrue(refused.stderr().contains("io_uring_disabled"), refused.stderr());

            try (JloopProcess server = JloopProcess.serve(dir, "--socket", dir.resolve("s.sock").toString(), "--size", "1M", dir.resolve("a.img").toString())) {
                assertTrue(server.startLine().contains("backend nio (auto)"), server.startLine());
                assertEquals(0, server.stop());
                assertTrue(server.log().contains("backend io_uring is not available, falling back"), server.log());
            }
        }
        finally {
            Files.writeString(sysctl, before);
        }
    }
}
