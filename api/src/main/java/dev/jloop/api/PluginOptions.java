package dev.jloop.api;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import static java.util.Objects.requireNonNull;

/**
 * The options a plugin was given, checked against the ones it declared: an unknown key or a
 * malformed value is refused with a message naming the plugin and what it takes, so that an option
 * meant for another plugin is never silently ignored. Declared options that were not given read as
 * their defaults. Immutable.
 */
public final class PluginOptions
{
    private final String plugin;
    private final Map<String, PluginOption> declared;
    private final Map<String, String> values;

    private PluginOptions(String plugin, Map<String, PluginOption> declared, Map<String, String> values)
    {
        this.plugin = plugin;
        this.declared = declared;
        this.values = values;
    }

    /**
     * Checks {@code given} against {@code declared}.
     *
     * @param plugin how messages name the plugin, e.g. {@code "the io_uring backend"}
     * @throws IllegalArgumentException for an unknown key or a malformed value
     */
    public static PluginOptions parse(String plugin, List<PluginOption> declared, Map<String, String> given)
    {
        requireNonNull(plugin, "plugin is null");
        Map<String, PluginOption> byKey = new LinkedHashMap<>();
        for (PluginOption option : declared) {
            if (byKey.putIfAbsent(option.key(), option) != null) {
                throw new IllegalArgumentException(plugin + " declares --" + option.key() + " twice");
            }
        }
        Map<String, String> values = new LinkedHashMap<>();
        for (Map.Entry<String, String> entry : given.entrySet()) {
            PluginOption option = byKey.get(entry.getKey());
            if (option == null) {
                throw new IllegalArgumentException(plugin + " takes no option '" + entry.getKey() + "'"
                        + (byKey.isEmpty() ? "" : "; it takes: " + String.join(", ", new TreeSet<>(byKey.keySet()))));
            }
            values.put(entry.getKey(), option.check(entry.getValue()));
        }
        for (PluginOption option : declared) {
            if (option.defaultValue() != null) {
                values.putIfAbsent(option.key(), option.defaultValue());
            }
        }
        return new PluginOptions(plugin, Map.copyOf(byKey), Map.copyOf(values));
    }

    /** Whether the option has a value, given or by default. */
    public boolean isSet(String key)
    {
        return values.containsKey(declaredKey(key));
    }

    /** The value as given (trimmed), or the default; {@code null} when unset. */
    public String string(String key)
    {
        return values.get(declaredKey(key));
    }

    public boolean flag(String key)
    {
        return Boolean.parseBoolean(values.get(declaredKey(key)));
    }

    /** A {@link PluginOption.Type#COUNT}; {@code defaultValue} when unset. */
    public int count(String key, int defaultValue)
    {
        String value = values.get(declaredKey(key));
        return value == null ? defaultValue : Sizes.parseCount(value);
    }

    /** A {@link PluginOption.Type#SIZE} in bytes; {@code defaultValue} when unset. */
    public long size(String key, long defaultValue)
    {
        String value = values.get(declaredKey(key));
        return value == null ? defaultValue : Sizes.parse(value);
    }

    /** A {@link PluginOption.Type#DURATION} in milliseconds; {@code defaultValue} when unset. */
    public long millis(String key, long defaultValue)
    {
        String value = values.get(declaredKey(key));
        return value == null ? defaultValue : Sizes.parseMillis(value);
    }

    /** A {@link PluginOption.Type#PATH}, absolute; {@code null} when unset. */
    public Path path(String key)
    {
        String value = values.get(declaredKey(key));
        return value == null ? null : Path.of(value).toAbsolutePath();
    }

    private String declaredKey(String key)
    {
        if (!declared.containsKey(key)) {
            throw new IllegalStateException(plugin + " reads --" + key + ", which it does not declare");
        }
        return key;
    }

    @Override
    public String toString()
    {
        return plugin + " " + values;
    }
}
