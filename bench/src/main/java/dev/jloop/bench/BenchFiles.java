package dev.jloop.bench;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

import static java.nio.file.StandardOpenOption.READ;
import static java.nio.file.StandardOpenOption.WRITE;

/** Scratch files for the benchmarks, under {@code -Djloop.bench.dir} (default: the temporary directory). */
final class BenchFiles
{
    private BenchFiles() {}

    /**
     * A file of {@code size} bytes of random data (not sparse: a hole would be read without touching
     * any page), read once so that it sits in the page cache.
     */
    static Path createCached(String prefix, int size)
            throws IOException
    {
        Path dir = Path.of(System.getProperty("jloop.bench.dir", System.getProperty("java.io.tmpdir")));
        Files.createDirectories(dir);
        Path path = Files.createTempFile(dir, prefix, ".img");
        byte[] chunk = new byte[1 << 20];
        new SplittableRandom(42).nextBytes(chunk);
        try (FileChannel channel = FileChannel.open(path, READ, WRITE)) {
            for (long written = 0; written < size; ) {
                written += channel.write(ByteBuffer.wrap(chunk, 0, (int) Math.min(chunk.length, size - written)), written);
            }
            ByteBuffer sink = ByteBuffer.allocateDirect(1 << 20);
            for (long read = 0; read < size; ) {
                sink.clear();
                read += channel.read(sink, read);
            }
        }
        return path;
    }

    /** {@code n} (a power of two) random block-aligned offsets below {@code size}. */
    static long[] randomOffsets(int n, long size, int blockSize)
    {
        SplittableRandom random = new SplittableRandom(7);
        long[] offsets = new long[n];
        for (int i = 0; i < n; i++) {
            offsets[i] = random.nextLong(size / blockSize) * blockSize;
        }
        return offsets;
    }
}
