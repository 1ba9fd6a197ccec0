package dev.jloop.testkit;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * Backend {@code memory}: a {@link MemoryBackingFile} loaded from the file at open (all-zero blocks
 * become holes) and, unless read-only, written back sparsely at close. Lets the file-based
 * {@link AbstractBackingFileTest} run on the in-memory file. Options: {@code memory-queued=N}
 * completes on N threads, {@code memory-max-transfer=N} makes reads and writes short,
 * {@code memory-no-extents} declares no extents.
 *
 * <p>Not registered with {@link java.util.ServiceLoader}: it is a test double, not a product backend.
 */
public final class MemoryBackendFactory
        implements BackendFactory
{
    private static final String QUEUED = "memory-queued";
    private static final String MAX_TRANSFER = "memory-max-transfer";
    private static final String NO_EXTENTS = "memory-no-extents";

    @Override
    public String name()
    {
        return "memory";
    }

    @Override
    public String description()
    {
        return "in-memory sparse file, loaded from FILE at open and written back at close (tests)";
    }

    /** A test double: chosen by name only, never by {@code --backend auto}. */
    @Override
    public int autoPriority()
    {
        return -1;
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(QUEUED, PluginOption.Type.COUNT, null, "complete on this many threads instead of at once", "--memory-queued 3"),
                PluginOption.of(MAX_TRANSFER, PluginOption.Type.COUNT, null, "transfer at most this many bytes per read or write", "--memory-max-transfer 5000"),
                PluginOption.flag(NO_EXTENTS, "declare no extents: every range is reported as data", "--memory-no-extents"));
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        Path path = config.path();
        if (!Files.isRegularFile(path)) {
            throw new IOException("not a regular file: " + path);
        }
        PluginOptions options = PluginOptions.parse("the memory backend", options(), config.options());
        MemoryBackingFile.Builder builder = MemoryBackingFile.builder(Files.size(path)).readOnly(config.readOnly());
        if (options.isSet(QUEUED)) {
            builder.queued(options.count(QUEUED, 0));
        }
        if (options.isSet(MAX_TRANSFER)) {
            builder.maxTransfer(options.count(MAX_TRANSFER, 0));
        }
        if (options.flag(NO_EXTENTS)) {
            builder.extents(false);
        }
        MemoryBackingFile memory = builder.build();
        load(path, memory);
        return new FileBacked(memory, path, config.readOnly());
    }

    private static void load(Path path, MemoryBackingFile memory)
            throws IOException
    {
        byte[] block = new byte[MemoryBackingFile.BLOCK_SIZE];
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            for (long offset = 0; offset < memory.size(); offset += block.length) {
                int n = (int) Math.min(block.length, memory.size() - offset);
                ByteBuffer buffer = ByteBuffer.wrap(block, 0, n);
                while (buffer.hasRemaining()) {
                    if (channel.read(buffer, offset + buffer.position()) < 0) {
                        throw new IOException("file shrank while loading: " + path);
                    }
                }
                if (!isZero(block, n)) {
                    memory.write(offset, n == block.length ? block : java.util.Arrays.copyOf(block, n));
                }
            }
        }
    }

    private static void store(Path path, MemoryBackingFile memory)
            throws IOException
    {
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            long[] failure = {0};
            memory.extents(0, memory.size(), (offset, length, type) -> {
                if (type != ExtentSink.DATA) {
                    return true;
                }
                byte[] data = new byte[(int) length];
                memory.read(offset, data);
                try {
                    ByteBuffer buffer = ByteBuffer.wrap(data);
                    while (buffer.hasRemaining()) {
                        channel.write(buffer, offset + buffer.position());
                    }
                }
                catch (IOException e) {
                    failure[0] = -Errno.EIO;
                    return false;
                }
                return true;
            });
            if (failure[0] != 0) {
                throw new IOException("cannot write back " + path);
            }
            // A trailing hole: extend the file without writing.
            if (channel.size() < memory.size()) {
                channel.write(ByteBuffer.allocate(1), memory.size() - 1);
            }
        }
    }

    private static boolean isZero(byte[] block, int n)
    {
        for (int i = 0; i < n; i++) {
            if (block[i] != 0) {
                return false;
            }
        }
        return true;
    }

    /** The memory file, written back to the path when closed. */
    private static final class FileBacked
            extends ForwardingBackingFile
    {
        private final MemoryBackingFile memory;
        private final Path path;
        private final boolean readOnly;

        FileBacked(MemoryBackingFile memory, Path path, boolean readOnly)
        {
            super(memory);
            this.memory = memory;
            this.path = path;
            this.readOnly = readOnly;
        }

        @Override
        public void close()
                throws IOException
        {
            if (memory.isClosed()) {
                return;
            }
            try {
                if (!readOnly) {
                    store(path, memory);
                }
            }
            finally {
                memory.close();
            }
        }
    }
}
