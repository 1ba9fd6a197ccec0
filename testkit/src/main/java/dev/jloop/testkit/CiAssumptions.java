package dev.jloop.testkit;

import org.junit.jupiter.api.Assumptions;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;

import static java.util.Objects.requireNonNull;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Assumptions about the machine (a kernel feature, root, a tool) that skip a test locally but fail it
 * on CI ({@code CI=true}), so that CI never passes by silently skipping what it is meant to check.
 */
public final class CiAssumptions
{
    private CiAssumptions() {}

    /** Whether this run is on CI: the environment variable {@code CI} is {@code true}. */
    public static boolean isCi()
    {
        return "true".equalsIgnoreCase(System.getenv("CI"));
    }

    /** Skips the test unless {@code condition} holds; on CI fails it instead, with {@code reason}. */
    public static void assumeAvailable(boolean condition, String reason)
    {
        requireNonNull(reason, "reason is null");
        if (condition) {
            return;
        }
        if (isCi()) {
            fail("required on CI but unavailable: " + reason);
        }
        Assumptions.abort(reason);
    }

    /** Skips the test (fails it on CI) unless the executable {@code name} is on {@code PATH}. */
    public static void assumeCommand(String name)
    {
        requireNonNull(name, "name is null");
        assumeAvailable(findCommand(name) != null, "command not found on PATH: " + name);
    }

    /** The executable {@code name} on {@code PATH}, or {@code null}. */
    public static Path findCommand(String name)
    {
        String path = System.getenv("PATH");
        if (path == null || name.isEmpty() || name.contains(File.separator)) {
            return null;
        }
        for (String directory : path.split(File.pathSeparator)) {
            if (directory.isEmpty()) {
                continue;
            }
            Path candidate = Path.of(directory, name);
            if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        return null;
    }
}
