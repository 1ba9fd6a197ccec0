package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.iter.PagePool;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The server over a Unix socket, found through its factory, against real NBD clients (libnbd's nbdinfo, qemu-io). */
class TestNbdInterop
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path directory;

    private final PagePool pagePool = new PagePool(64L << 20);
    private final MemoryBlockDevice disk = new MemoryBlockDevice(4 << 20, MemoryBlockDevice.allCapabilities());
    private NbdServer server;

    @AfterEach
    void close()
    {
        if (server != null) {
            server.close();
            assertEquals(0, pagePool.usedBytes(), "pages leaked");
        }
        pagePool.close();
    }

    private Path startOnSocket(String exportName)
            throws IOException
    {
        Path socket = directory.resolve("nbd sock");
        server = NbdServer.start(FrontendConfig.of(Map.of("socket", socket.toString())), List.of(
                new Export(exportName, "memory disk", disk),
                new Export("second", "another one", disk)), pagePool);
        return socket;
    }

    private static String run(String... command)
            throws IOException, InterruptedException
    {
        String tool = command[0];
        boolean present = Arrays.stream(System.getenv("PATH").split(":")).anyMatch(dir -> Files.isExecutable(Path.of(dir, tool)));
        if (!present) {
            if ("true".equals(System.getenv("CI"))) {
                fail(tool + " is not installed");
            }
            assumeTrue(false, tool + " is not installed");
        }
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        process.getOutputStream().close();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(process.waitFor(30, TimeUnit.SECONDS), tool + " did not finish");
        assertEquals(0, process.exitValue(), tool + " failed: " + output);
        return output;
    }

    @Test
    void factoryIsFoundByNameAndReportsUri()
            throws IOException
    {
        FrontendFactory factory = ServiceLoader.load(FrontendFactory.class).stream()
                .map(ServiceLoader.Provider::get)
                .filter(candidate -> candidate.name().equals("nbd"))
                .findFirst()
                .orElseThrow();
        assertTrue(factory instanceof NbdFrontendFactory);
        try (Frontend frontend = factory.create(FrontendConfig.of(Map.of("listen", "127.0.0.1:0")), List.of(new Export("a b/c", "", disk)))) {
            assertTrue(frontend.uri().matches("nbd://127\\.0\\.0\\.1:[1-9][0-9]*/a%20b%2Fc"), frontend.uri());
        }
        assertThrows(IllegalArgumentException.class,
                () -> factory.create(FrontendConfig.of(Map.of("listen", "127.0.0.1:0", "no-such-option", "1")), List.of(new Export("x", "", disk))));
    }

    @Test
    void unixSocketUriAndCleanup()
            throws IOException
    {
        Path socket = startOnSocket("disk");
        assertEquals("nbd+unix:///disk?socket=" + socket.toString().replace(" ", "%20"), server.uri());
        assertTrue(Files.exists(socket));
        server.close();
        assertFalse(Files.exists(socket), "socket file removed on close");
        server = null;
        // what a killed server leaves behind
        java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX).bind(java.net.UnixDomainSocketAddress.of(socket)).close();
        assertTrue(Files.exists(socket));

        // a stale socket file left behind is replaced; a regular file is not
        Files.createFile(directory.resolve("plain"));
        assertThrows(IOException.class, () -> NbdServer.start(
                FrontendConfig.of(Map.of("socket", directory.resolve("plain").toString())), List.of(new Export("d", "", disk)), pagePool));
        server = startAgainOn(socket);
        assertThrows(IOException.class, () -> startAgainOn(socket), "a live server's socket is not taken over");
    }

    private NbdServer startAgainOn(Path socket)
            throws IOException
    {
        return NbdServer.start(FrontendConfig.of(Map.of("socket", socket.toString())), List.of(new Export("disk", "", disk)), pagePool);
    }

    @Test
    void nbdinfoSeesTheExports()
            throws Exception
    {
        startOnSocket("disk");
        String json = run("nbdinfo", "--json", server.uri());
        assertTrue(json.contains("\"export-size\": " + (4 << 20)), json);
        assertTrue(json.contains("\"can_flush\": true"), json);
        assertTrue(json.contains("\"is_read_only\": false"), json);
        assertTrue(json.contains("\"block_size_preferred\": 4096"), json);

        String list = run("nbdinfo", "--list", "--json", server.uri());
        assertTrue(list.contains("\"export-name\": \"disk\"") && list.contains("\"export-name\": \"second\""), list);
    }

    @Test
    void qemuIoWritesAndReadsBack()
            throws Exception
    {
        startOnSocket("disk");
        List<String> command = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (String c : List.of(
                "write -P 0xab 4096 1M",
                "write -P 0xcd 0 1000",
                "write -z 8192 4096",
                "flush",
                "read -P 0xab 12288 1040384",
                "read -P 0xcd 0 1000",
                "read -P 0 8192 4096",
                "discard 2M 64k",
                "aio_write -P 0x11 3M 64k",
                "aio_write -P 0x22 3145728 4096",
                "aio_flush")) {
            command.add("-c");
            command.add(c);
        }
        command.add(server.uri());
        String output = run(command.toArray(String[]::new));
        assertFalse(output.contains("Pattern verification failed"), output);
        assertFalse(output.toLowerCase().contains("error"), output);

        byte[] expected = new byte[1000];
        Arrays.fill(expected, (byte) 0xcd);
        assertArrayEquals(expected, disk.read(0, 1000));
        assertEquals((byte) 0xab, disk.read(4096 + (1 << 20) - 1, 1)[0]);
        assertEquals(0, disk.read(8192, 1)[0]);
        assertEquals((byte) 0x11, disk.read((3 << 20) + 4096, 1)[0]);
    }
}
