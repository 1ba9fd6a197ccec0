package dev.jloop.api;

import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * How a frontend serves: its own options ({@link #options()}, keys it declares in
 * {@link FrontendFactory#options()}: where to listen, TLS, queues...) and whether only a command
 * jloop starts itself will use it ({@link #privateEndpoint()}). Immutable.
 */
public final class FrontendConfig
{
    private final Map<String, String> options;
    private final boolean privateEndpoint;
    private final Map<String, String> origin;

    /**
     * @param options the frontend's own options, as the user gave them (unchecked)
     * @param privateEndpoint whether only the command jloop runs ({@code --run}) will use the frontend
     */
    public FrontendConfig(Map<String, String> options, boolean privateEndpoint)
    {
        this(options, privateEndpoint, Map.of());
    }

    /**
     * @param origin how this server was started ({@link #origin()})
     */
    public FrontendConfig(Map<String, String> options, boolean privateEndpoint, Map<String, String> origin)
    {
        this.options = Map.copyOf(requireNonNull(options, "options is null"));
        this.privateEndpoint = privateEndpoint;
        this.origin = Map.copyOf(requireNonNull(origin, "origin is null"));
    }

    /** This config with {@code origin}. */
    public FrontendConfig withOrigin(Map<String, String> origin)
    {
        return new FrontendConfig(options, privateEndpoint, origin);
    }

    /** A config with these options, for any client. */
    public static FrontendConfig of(Map<String, String> options)
    {
        return new FrontendConfig(options, false);
    }

    /** The options the user gave, keyed as the frontend declares them; check them with {@link PluginOptions#parse}. */
    public Map<String, String> options()
    {
        return options;
    }

    /**
     * Whether only the command jloop runs itself (nbdkit's {@code --run}) will use the frontend. A
     * frontend that can choose where it serves then picks a place nobody else reaches (the NBD frontend:
     * a Unix socket in a new directory of mode 0700) unless its options name one.
     */
    public boolean privateEndpoint()
    {
        return privateEndpoint;
    }

    /**
     * How this server was started, for a frontend that records it so that another process can serve
     * the same exports again later (the ublk frontend's state file, read by {@code jloop ublk recover}).
     * Keys: {@code arguments} (those of {@code jloop serve}, one per line), {@code directory} (where
     * it was started), {@code backend} (the backend's name) and {@code files} (the exports' files,
     * absolute, one per line). Empty when unknown.
     */
    public Map<String, String> origin()
    {
        return origin;
    }

    @Override
    public String toString()
    {
        return "FrontendConfig" + options + (privateEndpoint ? " (private)" : "");
    }
}
