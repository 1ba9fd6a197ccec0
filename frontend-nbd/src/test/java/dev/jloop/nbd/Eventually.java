package dev.jloop.nbd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;

/** What the connection tests wait for after a client has gone: a condition, and this process's descriptors. */
final class Eventually
{
    private Eventually() {}

    /** Polls {@code condition} until it holds (true) or {@code seconds} have passed (false). */
    static boolean waitFor(BooleanSupplier condition, int seconds)
            throws InterruptedException
    {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(10);
        }
        return true;
    }

    static long openDescriptors()
    {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
