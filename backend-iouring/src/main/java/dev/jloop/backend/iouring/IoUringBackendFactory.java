package dev.jloop.backend.iouring;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.uring.IoUring;

import java.io.IOException;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * The {@code io_uring} backend: {@link IoUringBackingFile}, with as many slots as the configured queue
 * depth. Option: {@code uring-sqpoll} (a kernel thread polls the SQ). Unavailable where io_uring is (seccomp, {@code kernel.io_uring_disabled}); {@code auto} then
 * falls back to a lower-priority backend.
 */
public final class IoUringBackendFactory
        implements BackendFactory
{
    public static final String NAME = "io_uring";
    private static final String SQPOLL = "uring-sqpoll";

    @Override
    public String name()
    {
        return NAME;
    }

    @Override
    public String description()
    {
        return "io_uring: asynchronous reads, writes, fsync and fallocate on one ring per file";
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
    public List<PluginOption> options()
    {
        return List.of(PluginOption.flag(SQPOLL,
                "let a kernel thread poll the submission queue (saves system calls, costs a core)", "--backend io_uring --uring-sqpoll"));
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
        PluginOptions options = PluginOptions.parse("the " + NAME + " backend", options(), config.options());
        return new IoUringBackingFile(config, options.flag(SQPOLL));
    }
}
