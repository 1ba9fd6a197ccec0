package dev.jloop.dist;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code jloop serve} builds serve's command alone; everything else still sees every command. */
class TestMainCommands
{
    @Test
    void helpListsEveryCommand()
    {
        Result help = run("--help");
        assertEquals(0, help.exitCode(), help.err());
        for (String command : List.of("serve", "status", "commit", "backends", "frontends", "filters", "ublk", "help")) {
            assertTrue(help.out().lines().anyMatch(line -> line.trim().startsWith(command + " ") || line.trim().equals(command)),
                    command + " missing from:\n" + help.out());
        }
    }

    @Test
    void serveHelpIsTheSameAloneAsAmongEveryCommand()
    {
        Result alone = run("serve", "--help");
        Result among = run("help", "serve");
        assertEquals(0, alone.exitCode(), alone.err());
        assertEquals(0, among.exitCode(), among.err());
        assertTrue(alone.out().startsWith("Usage: jloop serve "), alone.out());
        // the plugins' options are there too
        assertTrue(alone.out().contains("--uring-sqpoll"), alone.out());
        assertEquals(among.out(), alone.out());
    }

    @Test
    void serveMistakesAreReportedAsBefore()
    {
        Result result = run("serve", "--no-such-option", "a.img");
        assertEquals(2, result.exitCode(), result.out() + result.err());
        assertTrue(result.err().startsWith("Unknown option: '--no-such-option'"), result.err());
        // picocli's suggestion comes from serve's options, the plugins' among them
        assertTrue(result.err().contains("Possible solutions: --no-recovery"), result.err());
    }

    @Test
    void otherCommandsStillWork()
    {
        Result backends = run("backends");
        assertEquals(0, backends.exitCode(), backends.err());
        assertTrue(backends.out().contains("sync (built in)"), backends.out());

        Result unknown = run("serv");
        assertEquals(2, unknown.exitCode(), unknown.out() + unknown.err());
        assertTrue(unknown.err().contains("serve"), unknown.err());
    }

    private static Result run(String... args)
    {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exitCode = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8),
                PluginFolders.none());
        return new Result(exitCode, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    private record Result(int exitCode, String out, String err) {}
}
