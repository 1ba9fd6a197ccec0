package dev.jloop.ublk;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The {@code ublk} frontend: the kernel's ublk driver makes the one export {@code /dev/ublkbN}.
 * Options ({@link FrontendConfig#options()}): {@code queues} (default 1), {@code queue-depth} (default
 * 128), {@code ublk-id} (default: the kernel picks); any other key is refused, so an option meant
 * for another frontend is never silently ignored. Needs root and {@code ublk_drv} (Linux 6.0+).
 */
public final class UblkFrontendFactory
        implements FrontendFactory
{
    private static final Set<String> OPTIONS = Set.of("queues", "queue-depth", "ublk-id");

    @Override
    public String name()
    {
        return "ublk";
    }

    @Override
    public String description()
    {
        return "Linux ublk block device /dev/ublkbN (root, ublk_drv)";
    }

    @Override
    public Frontend create(FrontendConfig config, List<Export> exports)
            throws IOException
    {
        if (exports.size() != 1) {
            throw new IOException("the ublk frontend serves exactly one export, not " + exports.size());
        }
        return UblkServer.start(config(config.options()), exports.get(0).device());
    }

    static UblkServer.Config config(Map<String, String> options)
            throws IOException
    {
        for (String key : options.keySet()) {
            if (!OPTIONS.contains(key)) {
                throw new IOException("unknown ublk option '" + key + "'; known options: " + new TreeSet<>(OPTIONS));
            }
        }
        UblkServer.Config defaults = UblkServer.Config.defaults();
        try {
            return new UblkServer.Config(
                    intOption(options, "queues", defaults.queues()),
                    intOption(options, "queue-depth", defaults.queueDepth()),
                    intOption(options, "ublk-id", defaults.devId()),
                    defaults.bufferBytes(),
                    defaults.commandTimeout(),
                    defaults.startTimeout());
        }
        catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    private static int intOption(Map<String, String> options, String name, int defaultValue)
    {
        String value = options.get(name);
        if (value == null || value.isEmpty()) {
            return defaultValue;
        }
        try {
            return Integer.parseInt(value.trim());
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " must be a number: '" + value + "'");
        }
    }
}
