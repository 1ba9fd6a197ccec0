package dev.jloop.api;

import java.nio.file.Path;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * What a backend is asked to open: a path and the user's choices. Backend-specific settings travel in
 * {@link #options()} (for example {@code uring-sqpoll=true}); a backend ignores the ones it does not
 * know. Immutable.
 */
public final class BackendConfig
{
    private final Path path;
    private final boolean readOnly;
    private final boolean direct;
    private final int queueDepth;
    private final Map<String, String> options;

    public BackendConfig(Path path, boolean readOnly, boolean direct, int queueDepth, Map<String, String> options)
    {
        this.path = requireNonNull(path, "path is null");
        this.readOnly = readOnly;
        this.direct = direct;
        if (queueDepth < 1) {
            throw new IllegalArgumentException("queue depth must be positive: " + queueDepth);
        }
        this.queueDepth = queueDepth;
        this.options = Map.copyOf(requireNonNull(options, "options is null"));
    }

    public static BackendConfig of(Path path)
    {
        return new BackendConfig(path, false, false, 64, Map.of());
    }

    /**
     * The file to open; for a backend whose targets are not files ({@link BackendFactory#targetsAreFiles()})
     * its target as the user named it, e.g. {@code pool/image}, which only that backend interprets.
     */
    public Path path()
    {
        return path;
    }

    /** Open read-only; writes must fail with EPERM. */
    public boolean readOnly()
    {
        return readOnly;
    }

    /** Bypass the page cache ({@code O_DIRECT}); unaligned requests are bounced by the backend. */
    public boolean direct()
    {
        return direct;
    }

    /** How many operations the frontend keeps in flight at most; sizes pools and rings. */
    public int queueDepth()
    {
        return queueDepth;
    }

    public Map<String, String> options()
    {
        return options;
    }

    public BackendConfig withReadOnly(boolean readOnly)
    {
        return new BackendConfig(path, readOnly, direct, queueDepth, options);
    }

    public BackendConfig withDirect(boolean direct)
    {
        return new BackendConfig(path, readOnly, direct, queueDepth, options);
    }

    @Override
    public String toString()
    {
        return "BackendConfig{path=" + path + ", readOnly=" + readOnly + ", direct=" + direct
                + ", queueDepth=" + queueDepth + ", options=" + options + "}";
    }
}
