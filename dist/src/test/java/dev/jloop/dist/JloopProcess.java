package dev.jloop.dist;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * {@code bin/jloop serve ...} of the assembled distribution, as a user starts it: a separate process,
 * stopped with SIGTERM.
 */
final class JloopProcess
        implements AutoCloseable
{
    private static final String SERVING = "jloop: serving ";

    private final Process process;
    private final Path log;
    private final String uri;
    private final String startLine;

    private JloopProcess(Process process, Path log, String startLine)
    {
        this.process = process;
        this.log = log;
        this.startLine = startLine;
        int end = startLine.indexOf(": ", SERVING.length());
        this.uri = startLine.substring(SERVING.length(), end);
    }

    static Path home()
    {
        String home = System.getProperty("jloop.home");
        assertNotNull(home, "jloop.home is not set: run through mvn verify");
        return Path.of(home);
    }

    static List<String> command(String... args)
    {
        List<String> command = new ArrayList<>();
        command.add(home().resolve("bin/jloop").toString());
        command.addAll(List.of(args));
        return command;
    }

    /** Starts {@code jloop serve ARGS} and waits for its start line. */
    static JloopProcess serve(Path logDirectory, String... args)
            throws IOException, InterruptedException
    {
        return serve(logDirectory, Map.of(), args);
    }

    /** Starts {@code jloop serve ARGS} with {@code environment} added to this one, and waits for its start line. */
    static JloopProcess serve(Path logDirectory, Map<String, String> environment, String... args)
            throws IOException, InterruptedException
    {
        List<String> command = command("serve");
        command.addAll(List.of(args));
        Path log = Files.createTempFile(logDirectory, "jloop-", ".log");
        ProcessBuilder builder = new ProcessBuilder(command).redirectError(log.toFile());
        builder.environment().putAll(environment);
        Process process = builder.start();
        BlockingQueue<String> firstLine = new ArrayBlockingQueue<>(1);
        Thread reader = new Thread(() -> {
            try (BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                boolean first = true;
                while ((line = out.readLine()) != null) {
                    if (first) {
                        firstLine.offer(line);
                        first = false;
                    }
                }
            }
            catch (IOException ignored) {
                // the process ended
            }
            firstLine.offer("");
        }, "jloop-stdout");
        reader.setDaemon(true);
        reader.start();
        String line = firstLine.poll(60, TimeUnit.SECONDS);
        if (line == null || !line.startsWith(SERVING)) {
            process.destroyForcibly();
            throw new IllegalStateException("jloop did not start: " + line + "\n" + Files.readString(log));
        }
        return new JloopProcess(process, log, line);
    }

    String uri()
    {
        return uri;
    }

    String startLine()
    {
        return startLine;
    }

    String log()
    {
        try {
            return Files.readString(log);
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    long pid()
    {
        return process.pid();
    }

    /** Sends SIGTERM and returns the exit code. */
    int stop()
            throws InterruptedException
    {
        return stop(Duration.ofSeconds(60));
    }

    /** Sends SIGTERM and returns the exit code; kills jloop and throws if it has not exited within {@code timeout}. */
    int stop(Duration timeout)
            throws InterruptedException
    {
        terminate();
        OptionalInt exitCode = awaitExit(timeout);
        if (exitCode.isEmpty()) {
            process.destroyForcibly();
            throw new IllegalStateException("jloop did not stop within " + timeout.toSeconds() + " s of SIGTERM\n" + log());
        }
        return exitCode.getAsInt();
    }

    /** Sends SIGTERM, and returns at once. */
    void terminate()
    {
        process.destroy();
    }

    /** The exit code, or empty if jloop is still running after {@code timeout}. */
    OptionalInt awaitExit(Duration timeout)
            throws InterruptedException
    {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            return OptionalInt.empty();
        }
        return OptionalInt.of(process.exitValue());
    }

    @Override
    public void close()
            throws InterruptedException
    {
        if (process.isAlive()) {
            stop();
        }
    }
}
