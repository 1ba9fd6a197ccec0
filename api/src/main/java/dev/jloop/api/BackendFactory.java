package dev.jloop.api;

import java.io.IOException;

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
     * Where {@code --backend auto} should rank this backend: the available one with the highest
     * priority wins.
     */
    default int autoPriority()
    {
        return 0;
    }

    /**
     * Opens the file. Fails with an {@link IOException} whose message says what is wrong with the
     * file (missing, not a regular file or block device, no permission, O_DIRECT unsupported).
     */
    BackingFile open(BackendConfig config)
            throws IOException;
}
