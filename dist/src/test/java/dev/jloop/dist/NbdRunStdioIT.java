package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.Test;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The captive modes, as nbdkit has them: {@code --run COMMAND} and {@code --stdio}, driven by libnbd's
 * tools ({@code nbdinfo -- [ ... ]} and {@code nbdcopy -- [ ... ]} use socket activation,
 * {@code nbdfuse --command} a socket pair on standard input/output) and by a raw client on pipes.
 */
class NbdRunStdioIT
        extends AbstractJloopIT
{
    private static final long IHAVEOPT = 0x49484156454F5054L;

    private static String launcher()
    {
        return JloopProcess.home().resolve("bin/jloop").toString();
    }

    @Test
    void nbdinfoStartsJloopItself()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdinfo");
        Path image = dir.resolve("disk.img");
        Files.write(image, new byte[3 << 20]);
        String json = Exec.check(60, "nbdinfo", "--json", "--", "[", launcher(), "serve", "--stdio", "--export", "disk", image.toString(), "]");
        // nothing but nbdinfo's JSON on standard output: jloop logs on stderr only
        assertTrue(json.trim().startsWith("{") && json.trim().endsWith("}"), json);
        assertEquals(3L << 20, Long.parseLong(jsonValue(json, "export-size")), json);
        assertEquals("disk", jsonValue(json, "export-name"), json);
    }

    @Test
    void nbdcopyInAndOutThroughStdio()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path source = dir.resolve("source.img");
        byte[] content = randomBytes(5 << 20, 11);
        Files.write(source, content);

        Path out = dir.resolve("out.img");
        Exec.check(120, "nbdcopy", "--", "[", launcher(), "serve", "--stdio", source.toString(), "]", out.toString());
        assertArrayEquals(content, Files.readAllBytes(out));

        Path target = dir.resolve("target.img");
        Files.write(target, new byte[5 << 20]);
        Exec.check(120, "nbdcopy", source.toString(), "--", "[", launcher(), "serve", "--stdio", target.toString(), "]");
        assertArrayEquals(content, Files.readAllBytes(target));
    }

    @Test
    void runCopiesAndPassesTheCommandsStatus()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        Path image = dir.resolve("disk.img");
        byte[] content = randomBytes(2 << 20, 13);
        Files.write(image, content);

        Exec copy = run("nbdcopy \"$uri\" out.img", image.toString());
        assertEquals(0, copy.exitCode(), copy.stderr());
        assertArrayEquals(content, Files.readAllBytes(dir.resolve("out.img")));

        Exec failed = run("nbdcopy \"$uri\" no/such/dir/out.img", image.toString());
        assertEquals(1, failed.exitCode(), failed.stderr());
        assertEquals(7, run("exit 7", image.toString()).exitCode());
        assertEquals(128 + 15, run("kill -TERM $$", image.toString()).exitCode(), "killed by SIGTERM, as a shell reports it");
        // the server closed cleanly and gave its file back intact
        assertArrayEquals(content, Files.readAllBytes(image));
    }

    @Test
    void runEnvironment()
            throws Exception
    {
        Path image = dir.resolve("disk.img");
        Files.write(image, new byte[1 << 20]);
        String print = "printf '%s|%s|%s|%s|%s' \"$uri\" \"$unixsocket\" \"${port-unset}\" \"$exportname\" \"$tls\"";

        Exec unix = run(print, "--export", "boot", image.toString());
        assertEquals(0, unix.exitCode(), unix.stderr());
        String[] fields = unix.stdout().split("\\|", -1);
        assertTrue(fields[0].matches("nbd\\+unix:///boot\\?socket=/.*/nbd\\.sock"), unix.stdout());
        assertTrue(fields[0].endsWith(fields[1]), unix.stdout());
        assertEquals("unset", fields[2], unix.stdout());
        assertEquals("boot", fields[3]);
        assertEquals("0", fields[4]);
        assertFalse(Files.exists(Path.of(fields[1])), "the private socket is removed");
        assertFalse(Files.exists(Path.of(fields[1]).getParent()), "and its directory");

        Exec tcp = run(print, "--listen", "127.0.0.1:0", image.toString());
        assertEquals(0, tcp.exitCode(), tcp.stderr());
        fields = tcp.stdout().split("\\|", -1);
        assertTrue(fields[2].matches("\\d+") && !fields[2].equals("0"), tcp.stdout());
        assertEquals("nbd://127.0.0.1:" + fields[2] + "/", fields[0]);
        assertEquals("", fields[1]);
    }

    /** --stdio on two pipes (no socket at all): a client written here does the handshake and reads. */
    @Test
    void stdioOverPipes()
            throws Exception
    {
        Path image = dir.resolve("disk.img");
        byte[] content = randomBytes(1 << 20, 17);
        Files.write(image, content);
        Process process = new ProcessBuilder(launcher(), "serve", "--stdio", image.toString())
                .redirectError(dir.resolve("stdio.log").toFile())
                .start();
        try {
            DataInputStream in = new DataInputStream(process.getInputStream());
            DataOutputStream out = new DataOutputStream(process.getOutputStream());
            assertEquals(0x4e42444d41474943L, in.readLong());
            assertEquals(IHAVEOPT, in.readLong());
            in.readUnsignedShort();
            out.writeInt(3); // fixed newstyle, no zeroes
            out.writeLong(IHAVEOPT);
            out.writeInt(7); // NBD_OPT_GO, default export, no information requests
            out.writeInt(6);
            out.writeInt(0);
            out.writeShort(0);
            out.flush();
            long size = -1;
            while (true) {
                assertEquals(0x3e889045565a9L, in.readLong());
                assertEquals(7, in.readInt());
                int type = in.readInt();
                byte[] data = new byte[in.readInt()];
                in.readFully(data);
                if (type == 1) {
                    break;
                }
                assertEquals(3, type, "NBD_REP_INFO");
                if (data[0] == 0 && data[1] == 0) {
                    size = java.nio.ByteBuffer.wrap(data, 2, 8).getLong();
                }
            }
            assertEquals(1 << 20, size);
            out.writeInt(0x25609513);
            out.writeShort(0);
            out.writeShort(0); // READ
            out.writeLong(42);
            out.writeLong(4096);
            out.writeInt(8192);
            out.flush();
            assertEquals(0x67446698, in.readInt());
            assertEquals(0, in.readInt());
            assertEquals(42, in.readLong());
            byte[] read = new byte[8192];
            in.readFully(read);
            assertArrayEquals(Arrays.copyOfRange(content, 4096, 4096 + 8192), read);
            out.writeInt(0x25609513);
            out.writeShort(0);
            out.writeShort(2); // DISC
            out.writeLong(43);
            out.writeLong(0);
            out.writeInt(0);
            out.flush();
            assertTrue(process.waitFor(60, TimeUnit.SECONDS), "jloop --stdio did not exit after the client left");
            assertEquals(0, process.exitValue(), Files.readString(dir.resolve("stdio.log")));
            assertEquals(-1, in.read(), "nothing after the replies");
        }
        finally {
            process.destroyForcibly();
        }
    }

    /** nbd_connect_command: a socket pair on standard input and output, through nbdfuse. */
    @Test
    void stdioOverASocketPair()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdfuse");
        CiAssumptions.assumeCommand("fusermount3");
        CiAssumptions.assumeAvailable("root".equals(System.getProperty("user.name")) && Files.exists(Path.of("/dev/fuse")),
                "needs root and /dev/fuse for nbdfuse");
        Path image = dir.resolve("disk.img");
        byte[] content = randomBytes(2 << 20, 19);
        Files.write(image, content);
        Path mount = dir.resolve("mnt");
        Files.createDirectories(mount);
        Process nbdfuse = new ProcessBuilder("nbdfuse", mount.resolve("disk").toString(), "--command", launcher(), "serve", "--stdio", image.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("nbdfuse.log").toFile()).start();
        try {
            Path file = mount.resolve("disk");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!Files.exists(file)) {
                assertTrue(System.nanoTime() < deadline && nbdfuse.isAlive(), "nbdfuse did not mount:\n" + Files.readString(dir.resolve("nbdfuse.log")));
                Thread.sleep(100);
            }
            assertArrayEquals(content, Files.readAllBytes(file));
        }
        finally {
            Exec.run(30, "fusermount3", "-u", mount.toString());
            assertTrue(nbdfuse.waitFor(60, TimeUnit.SECONDS));
        }
        String log = Files.readString(dir.resolve("nbdfuse.log"));
        assertTrue(log.contains("serving stdio") && log.contains("NBD server on stdio closed"), log);
    }

    private Exec run(String command, String... args)
    {
        List<String> all = new ArrayList<>(List.of(launcher(), "serve", "--run", command));
        all.addAll(List.of(args));
        return Exec.run(120, dir, Map.of(), all.toArray(String[]::new));
    }

    static String utf8(byte[] bytes)
    {
        return new String(bytes, StandardCharsets.UTF_8);
    }
}
