package dev.jloop.api;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.util.List;

/**
 * Creates {@link BackingFile}s of one kind. Found with {@link java.util.ServiceLoader}: a backend jar
 * lists its factory in {@code META-INF/services/dev.jloop.api.BackendFactory}. Names are lower case
 * ({@code [a-z][a-z0-9_-]*}) and unique; the user selects a backend with {@code --backend NAME}.
 * Implementations must be thread-safe and cheap to construct (construction does no I/O).
 */
public interface BackendFactory
{
    String name();

    /** One line for {@code --help}. */
    String description();

    /**
     * Why this backend cannot work on this machine (for example io_uring disabled by seccomp), or
     * {@code null} when it can. Probed once; {@code --backend auto} skips unavailable backends.
     */
    default String unavailabilityCause()
    {
        return null;
    }

    /**
     * Where {@code --backend auto} ranks this backend: of the backends that are available here (see
     * {@link #unavailabilityCause()}), the one with the highest priority is chosen. The built-in ones
     * are {@code io_uring} 20, {@code nio} 10 and {@code sync} 0 (the default), so auto takes io_uring
     * where the kernel allows it and falls back to nio. A plugin that should win over them returns
     * more than 20; one that should only ever be chosen by name ({@code --backend NAME}), such as a
     * test double or a backend that needs options to work, returns a negative value, which keeps it
     * out of auto altogether. Among equal priorities the choice is unspecified.
     */
    default int autoPriority()
    {
        return 0;
    }

    /**
     * The options this plugin takes, each with its type, default, help and an example: {@code jloop
     * serve} offers each as {@code --KEY} and puts what the user gave into the config's options.
     * Check them with {@link PluginOptions#parse}, which refuses keys not declared here.
     */
    default List<PluginOption> options()
    {
        return List.of();
    }

    /**
     * Whether what the user names (FILE, {@code --export NAME=FILE}) is a file of the local file
     * system: then jloop checks that it exists and reads its size itself, and calls {@link #create}
     * only to make or grow it. True by default. A backend whose targets are something else (an image
     * of a storage system, such as rbd's {@code POOL/IMAGE}) returns false: it receives the name as
     * the user wrote it in {@link BackendConfig#path()}, says itself in {@link #open} that the target
     * is missing, and gets every {@code --size} in {@link #create}, where it must not shrink a larger
     * target.
     */
    default boolean targetsAreFiles()
    {
        return true;
    }

    /**
     * Makes {@code config.path()} an image of {@code size} bytes, for {@code --size}: creates it when
     * it is missing, or grows it when it is smaller (jloop never asks to shrink). Called before
     * {@link #open}, with the options the file will be opened with. What was added must read as
     * zeros once opened, so a backend that stores data in another form (encrypted, encoded, in
     * another system) overrides this; the default makes or extends a sparse plain file with
     * {@code ftruncate(2)}, which reads as zeros.
     *
     * @throws IOException whose message says what is wrong (no such directory, no permission, no space)
     */
    default void create(BackendConfig config, long size)
            throws IOException
    {
        try (RandomAccessFile file = new RandomAccessFile(config.path().toFile(), "rw")) {
            if (file.length() < size) {
                file.setLength(size);
            }
        }
    }

    /**
     * Opens the file. Fails with an {@link IOException} whose message says what is wrong with the
     * file (missing, not a regular file or block device, no permission, O_DIRECT unsupported).
     */
    BackingFile open(BackendConfig config)
            throws IOException;
}
