package dev.jloop.dist;

import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the tests of the assembled distribution share: a directory of each test's own under
 * {@code target/}, the {@code jloop serve} processes it starts (stopped after it), running
 * {@code bin/jloop} to its end, and reading what jloop and the NBD tools print.
 */
abstract class AbstractJloopIT
{
    private static final Pattern PORT = Pattern.compile("nbds?://127\\.0\\.0\\.1:(\\d+)/.*");

    /** The test's files: images, sockets, logs, keys. */
    @TempDir(factory = TargetTempDirFactory.class)
    protected Path dir;

    private final List<JloopProcess> servers = new ArrayList<>();

    @AfterEach
    final void stopServers()
            throws InterruptedException
    {
        for (JloopProcess server : servers) {
            server.close();
        }
        servers.clear();
    }

    /** Starts {@code jloop serve ARGS}, with its log in {@link #dir}; it is stopped after the test. */
    protected JloopProcess serve(String... args)
            throws Exception
    {
        JloopProcess server = JloopProcess.serve(dir, args);
        servers.add(server);
        return server;
    }

    /** Runs {@code bin/jloop ARGS} to its end: for commands that stop by themselves (mistakes, {@code --help}). */
    protected static Exec jloop(String... args)
    {
        return Exec.run(60, null, Map.of(), JloopProcess.command(args).toArray(String[]::new));
    }

    /** jloop exited with 1 and said what is wrong in one line and nothing else: {@code jloop: ...}, containing {@code expected}. */
    protected static void assertOneLineError(Exec result, String expected)
    {
        assertEquals(1, result.exitCode(), "exit code of a refused command: " + result.stdout() + result.stderr());
        List<String> lines = result.stderr().lines().toList();
        assertEquals(1, lines.size(), "one error line expected:\n" + result.stderr());
        assertTrue(lines.get(0).startsWith("jloop: ") && lines.get(0).contains(expected), "expected 'jloop: ...' with '" + expected + "' in: " + lines.get(0));
    }

    /** The TCP port of a server listening on 127.0.0.1, from its URI. */
    protected static String port(JloopProcess server)
    {
        Matcher matcher = PORT.matcher(server.uri());
        assertTrue(matcher.matches(), "a URI of 127.0.0.1 with a port: " + server.uri());
        return matcher.group(1);
    }

    /** A value of {@code nbdinfo --json} or {@code qemu-img --output=json}, without the quotes of a string. */
    protected static String jsonValue(String json, String key)
    {
        Matcher m = Pattern.compile("\"" + Pattern.quote(key) + "\"\\s*:\\s*(\"[^\"]*\"|[^,}\\s]+)").matcher(json);
        assertTrue(m.find(), key + " missing in " + json);
        String value = m.group(1);
        return value.startsWith("\"") ? value.substring(1, value.length() - 1) : value;
    }

    protected static long jsonNumber(String json, String key)
    {
        return Long.parseLong(jsonValue(json, key));
    }

    protected static byte[] randomBytes(int length, long seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).nextBytes(bytes);
        return bytes;
    }
}
