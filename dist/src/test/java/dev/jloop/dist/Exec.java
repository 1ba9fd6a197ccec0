package dev.jloop.dist;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** Runs an external program (an NBD client, mkfs, ...) with a timeout and collects its output. */
record Exec(int exitCode, String stdout, String stderr)
{
    static Exec run(long timeoutSeconds, String... command)
    {
        return run(timeoutSeconds, null, Map.of(), command);
    }

    static Exec run(long timeoutSeconds, Path directory, Map<String, String> environment, String... command)
    {
        ProcessBuilder builder = new ProcessBuilder(command);
        if (directory != null) {
            builder.directory(directory.toFile());
        }
        builder.environment().putAll(environment);
        try {
            Process process = builder.start();
            process.getOutputStream().close();
            CompletableFuture<String> out = drain(process.getInputStream());
            CompletableFuture<String> err = drain(process.getErrorStream());
            if (!process.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                fail(String.join(" ", command) + " did not finish within " + timeoutSeconds + " s");
            }
            return new Exec(process.exitValue(), out.join(), err.join());
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** Runs the command and fails the test, with its output, unless it exits 0. */
    static String check(long timeoutSeconds, String... command)
    {
        Exec result = run(timeoutSeconds, command);
        assertEquals(0, result.exitCode(), () -> String.join(" ", command) + " failed:\n" + result.stdout() + result.stderr());
        return result.stdout();
    }

    static List<String> lines(String text)
    {
        return text.lines().toList();
    }

    private static CompletableFuture<String> drain(InputStream stream)
    {
        return CompletableFuture.supplyAsync(() -> {
            try (stream) {
                return new String(stream.readAllBytes(), StandardCharsets.UTF_8);
            }
            catch (IOException e) {
                return "";
            }
        });
    }
}
