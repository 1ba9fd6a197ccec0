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

    /**
     * @param options the frontend's own options, as the user gave them (unchecked)
     * @param privateEndpoint whether only the command jloop runs ({@code --run}) will use the frontend
     */
    public FrontendConfig(Map<String, String> options, boolean privateEndpoint)
    {
        this.options = Map.copyOf(requireNonNull(options, "options is null"));
        this.privateEndpoint = privateEndpoint;
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

    @Override
    public String toString()
    {
        return "FrontendConfig" + options + (privateEndpoint ? " (private)" : "");
    }
}
