package dev.jloop.api;

import java.io.IOException;
import java.util.List;

/**
 * Creates frontends of one protocol ({@code nbd}, {@code ublk}). Found with
 * {@link java.util.ServiceLoader} ({@code META-INF/services/dev.jloop.api.FrontendFactory}); selected
 * with {@code --frontend NAME}.
 */
public interface FrontendFactory
{
    String name();

    String description();

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
     * Checks {@code config} without starting anything; jloop calls it before it creates or opens a
     * file, so that a mistake in the options costs nothing. The default checks the keys and values
     * against {@link #options()}; a frontend with rules between options (one excludes another)
     * checks those too.
     *
     * @throws IllegalArgumentException saying what is wrong, naming the option as the user typed it
     */
    default void validate(FrontendConfig config)
    {
        PluginOptions.parse("the " + name() + " frontend", options(), config.options());
    }

    /**
     * Binds and starts serving. Fails with an {@link IOException} whose message a user can act on
     * (address in use, socket path not writable, kernel module missing).
     */
    Frontend create(FrontendConfig config, List<Export> exports)
            throws IOException;
}
