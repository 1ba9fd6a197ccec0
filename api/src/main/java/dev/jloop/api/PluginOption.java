package dev.jloop.api;

import java.util.List;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * One setting a plugin (a backend or a frontend) takes, declared by its factory so that the command
 * line, its help and the check of a value all come from the plugin, as nbdkit's {@code config} and
 * {@code config_help}. On the command line a declared option is {@code --KEY VALUE}, or {@code --KEY}
 * alone for a {@link Type#FLAG}. Immutable.
 */
public final class PluginOption
{
    private static final Pattern KEY = Pattern.compile("[a-z][a-z0-9]*(-[a-z0-9]+)*");

    /** What a value looks like; the checks {@link PluginOptions} makes. */
    public enum Type
    {
        /** Any text. */
        STRING,
        /** {@code true} or {@code false}; on the command line, present or not. */
        FLAG,
        /** A whole number, 0 or more. */
        COUNT,
        /** Bytes, as {@link Sizes#parse} reads them ({@code 64M}). */
        SIZE,
        /** A time, as {@link Sizes#parseMillis} reads it ({@code 30s}, {@code 500ms}; a bare number is seconds). */
        DURATION,
        /** A file or directory; relative to the directory jloop was started in. */
        PATH,
        /** One of {@link #choices()}. */
        CHOICE,
    }

    private final String key;
    private final Type type;
    private final String defaultValue;
    private final List<String> choices;
    private final String help;
    private final String example;

    private PluginOption(String key, Type type, String defaultValue, List<String> choices, String help, String example)
    {
        this.key = requireNonNull(key, "key is null");
        if (!KEY.matcher(key).matches()) {
            throw new IllegalArgumentException("option keys are lower-case words joined by '-': " + key);
        }
        this.type = requireNonNull(type, "type is null");
        this.choices = List.copyOf(choices);
        if ((type == Type.CHOICE) == this.choices.isEmpty()) {
            throw new IllegalArgumentException("choices belong to CHOICE options, and every CHOICE option has some: " + key);
        }
        this.help = requireNonNull(help, "help is null");
        this.example = requireNonNull(example, "example is null");
        this.defaultValue = defaultValue;
        if (defaultValue != null) {
            check(defaultValue);
        }
    }

    /**
     * An option of {@code type}; {@code defaultValue} (may be {@code null}: unset) in the form a user
     * would write it; {@code help} one sentence; {@code example} the option as a user types it, e.g.
     * {@code --queues 2}.
     */
    public static PluginOption of(String key, Type type, String defaultValue, String help, String example)
    {
        return new PluginOption(key, type, defaultValue, List.of(), help, example);
    }

    /** An on/off option, off unless given. */
    public static PluginOption flag(String key, String help, String example)
    {
        return new PluginOption(key, Type.FLAG, "false", List.of(), help, example);
    }

    /** One of {@code choices}, {@code defaultValue} (one of them) unless given. */
    public static PluginOption choice(String key, List<String> choices, String defaultValue, String help, String example)
    {
        return new PluginOption(key, Type.CHOICE, defaultValue, choices, help, example);
    }

    public String key()
    {
        return key;
    }

    public Type type()
    {
        return type;
    }

    /** The value when none is given, as a user would write it; {@code null} when the option is then unset. */
    public String defaultValue()
    {
        return defaultValue;
    }

    public List<String> choices()
    {
        return choices;
    }

    public String help()
    {
        return help;
    }

    /** The option as a user types it. */
    public String example()
    {
        return example;
    }

    /**
     * Checks {@code value} against the type; returns it trimmed.
     *
     * @throws IllegalArgumentException saying what is wrong, with the option's key
     */
    String check(String value)
    {
        String trimmed = value.trim();
        try {
            switch (type) {
                case FLAG:
                    if (!trimmed.equals("true") && !trimmed.equals("false")) {
                        throw new IllegalArgumentException("expected true or false, not '" + value + "'");
                    }
                    break;
                case COUNT:
                    Sizes.parseCount(trimmed);
                    break;
                case SIZE:
                    Sizes.parse(trimmed);
                    break;
                case DURATION:
                    Sizes.parseMillis(trimmed);
                    break;
                case CHOICE:
                    if (!choices.contains(trimmed)) {
                        throw new IllegalArgumentException("expected " + String.join(", ", choices) + ", not '" + value + "'");
                    }
                    break;
                case PATH:
                    if (trimmed.isEmpty()) {
                        throw new IllegalArgumentException("expected a path");
                    }
                    break;
                case STRING:
                default:
                    break;
            }
        }
        catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--" + key + ": " + e.getMessage() + " (e.g. " + example + ")", e);
        }
        return trimmed;
    }

    @Override
    public String toString()
    {
        return "--" + key + " (" + type + (defaultValue == null ? "" : ", default " + defaultValue) + ")";
    }
}
