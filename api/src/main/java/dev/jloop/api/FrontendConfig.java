package dev.jloop.api;

import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;

import static java.util.Objects.requireNonNull;

/**
 * Where and how a frontend serves: a TCP address, or a Unix socket path instead, and settings of the
 * frontend's own in {@link #options()}. Immutable.
 */
public final class FrontendConfig
{
    private final String host;
    private final int port;
    private final Path socket;
    private final Map<String, String> options;

    public FrontendConfig(String host, int port, Path socket, Map<String, String> options)
    {
        this.host = requireNonNull(host, "host is null");
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port out of range: " + port);
        }
        this.port = port;
        this.socket = socket;
        this.options = Map.copyOf(requireNonNull(options, "options is null"));
    }

    public String host()
    {
        return host;
    }

    /** TCP port; 0 picks a free one (see {@link Frontend#uri()}). */
    public int port()
    {
        return port;
    }

    /** Unix socket to serve on instead of TCP. */
    public Optional<Path> socket()
    {
        return Optional.ofNullable(socket);
    }

    public Map<String, String> options()
    {
        return options;
    }
}
