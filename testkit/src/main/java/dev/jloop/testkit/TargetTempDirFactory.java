package dev.jloop.testkit;

import org.junit.jupiter.api.extension.AnnotatedElementContext;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.io.TempDirFactory;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Temporary directories under {@code target/} of the module being tested, for
 * {@code @TempDir(factory = TargetTempDirFactory.class)}, the one way jloop's tests make them:
 * {@code /tmp} may be a tmpfs or overlay without O_DIRECT or punch-hole, while the build directory
 * lives on the real file system. The name stays short, since a Unix socket made inside has a path of
 * at most 107 bytes.
 */
public final class TargetTempDirFactory
        implements TempDirFactory
{
    @Override
    public Path createTempDirectory(AnnotatedElementContext elementContext, ExtensionContext extensionContext)
            throws Exception
    {
        Path base = Files.createDirectories(Path.of("target", "jloop-tmp"));
        return Files.createTempDirectory(base.toAbsolutePath(), "test-");
    }
}
