package dev.jloop.api;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * Creates filters of one kind: layers between a frontend and a backend, as nbdkit's filters
 * ({@code --filter=cow --filter=rate}). A filter is a {@link BackingFile} that wraps the
 * {@link BackingFile} below it (the backend's, or another filter's), usually a
 * {@link ForwardingBackingFile} that overrides what it changes, and keeps the same contract:
 * results as {@code -errno} or {@link Kiocb#QUEUED}, each kiocb completed exactly once, nothing in
 * a completion that waits. It may change the {@link Capabilities} it reports (a copy-on-write layer
 * makes a read-only file writable; a rate limit keeps them). Found with
 * {@link java.util.ServiceLoader} ({@code META-INF/services/dev.jloop.api.FilterFactory}); chosen
 * with {@code --filter NAME[:KEY=VALUE,...]}, the first given closest to the frontend.
 * Implementations must be thread-safe and cheap to construct (construction does no I/O).
 */
public interface FilterFactory
{
    /** Lower case ({@code [a-z][a-z0-9_-]*}), unique among filters. */
    String name();

    /** One line for {@code jloop filters} and {@code --help}. */
    String description();

    /**
     * The options this filter takes, as {@link BackendFactory#options()}: offered as {@code --KEY},
     * as {@code --filter NAME:KEY=VALUE} and per export; check them with {@link PluginOptions#parse}.
     */
    default List<PluginOption> options()
    {
        return List.of();
    }

    /**
     * Checks {@code options} without opening anything; jloop calls it before it creates or opens a
     * file. The default checks keys and values against {@link #options()}; a filter whose values
     * have more rules (an errno name, a rate) checks those too.
     *
     * @throws IllegalArgumentException saying what is wrong, naming the option
     */
    default void validate(Map<String, String> options)
    {
        PluginOptions.parse("the " + name() + " filter", options(), options);
    }

    /**
     * How the file below must be opened for this filter: a copy-on-write filter, for one, opens its
     * base read-only. The default changes nothing. Called before the backend opens the file.
     */
    default BackendConfig configureBackend(BackendConfig config, Map<String, String> options)
    {
        return config;
    }

    /**
     * Wraps {@code next}, the file of the export {@code export} describes (as the user asked for
     * it, before {@link #configureBackend}), with {@code options} as the user gave them. The filter
     * owns {@code next} from here on: its {@link BackingFile#close()} closes it. On failure
     * {@code next} is left open for the caller to close.
     *
     * @throws IOException whose message says what is wrong (an overlay that cannot be created, say)
     * @throws IllegalArgumentException for a bad option, naming it
     */
    BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
            throws IOException;
}
