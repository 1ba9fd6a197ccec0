package dev.jloop.testkit;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/**
 * Descriptors this process holds on a file, from {@code /proc/self/fd}. Counting only those that
 * point at the file keeps the check exact while the JVM opens and closes others (jars, sockets).
 * Internal to {@link AbstractBackingFileTest}.
 */
final class OpenFiles
{
    private OpenFiles() {}

    static long descriptorsOf(Path file)
            throws IOException
    {
        if (!Files.exists(file)) {
            // not a file (an image of a backend that serves something else): no descriptor points at it
            return 0;
        }
        Path target = file.toRealPath();
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(fd -> pointsAt(fd, target)).count();
        }
    }

    private static boolean pointsAt(Path fd, Path target)
    {
        try {
            return Files.readSymbolicLink(fd).equals(target);
        }
        catch (IOException | UnsupportedOperationException e) {
            // closed while we looked
            return false;
        }
    }
}
