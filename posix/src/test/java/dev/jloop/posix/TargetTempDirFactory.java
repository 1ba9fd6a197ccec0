package dev.jloop.posix;

import org.junit.jupiter.api.extension.AnnotatedElementContext;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.io.TempDirFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Temporary directories under {@code target/}, which is on the file system the build runs on. */
public class TargetTempDirFactory
        implements TempDirFactory
{
    @Override
    public Path createTempDirectory(AnnotatedElementContext elementContext, ExtensionContext extensionContext)
            throws IOException
    {
        Path target = Path.of("target", "tmp");
        Files.createDirectories(target);
        return Files.createTempDirectory(target.toAbsolutePath(), "junit");
    }
}
