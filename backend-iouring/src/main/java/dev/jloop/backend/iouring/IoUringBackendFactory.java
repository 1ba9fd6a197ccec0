package dev.jloop.backend.iouring;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.uring.IoUring;

import java.io.IOException;

import static java.util.Objects.requireNonNull;

/**
 * The {@code io_uring} backend: {@link IoUringBackingFile}. Options: {@code queue-depth=N} (slots in
 * flight, default the configured queue depth) and {@code uring-sqpoll=true} (a kernel thread polls the
 * SQ). Unavailable where io_uring is (seccomp, {@code kernel.io_uring_disabled}); {@code auto} then
 * falls back to a lower-priority backend.
 */
public final class IoUringBackendFactory
        implements BackendFactory
{
    public static final String NAME = "io_uring";

    @Override
    public String name()
    {
        return NAME;
    }

    @Override
    public String description()
    {
        return "io_uring: asynchronous reads, writes, fsync and fallocate on one ring per file (options queue-depth, uring-sqpoll)";
    }

    @Override
    public String unavailabilityCause()
    {
        return IoUring.unavailabilityCause();
    }

    /** Above nio and sync: where io_uring works, {@code auto} picks it. */
    @Override
    public int autoPriority()
    {
        return 20;
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        requireNonNull(config, "config is null");
        String cause = IoUring.unavailabilityCause();
        if (cause != null) {
            throw new IOException("io_uring backend unavailable: " + cause);
        }
        return new IoUringBackingFile(config);
    }
}
