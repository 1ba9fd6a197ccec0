package dev.jloop.dist;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * A plugin as {@code --backend} and {@code --frontend} name it: {@code NAME}, or
 * {@code NAME:KEY=VALUE,KEY=VALUE...} with options of that plugin ({@code ,,} for a comma in a
 * value; {@code KEY} alone for a flag), as {@code --export}'s own options are written.
 */
record PluginSpec(String name, Map<String, String> options)
{
    static final String SYNTAX = "NAME[:KEY=VALUE,...]";
    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9_-]*");

    PluginSpec
    {
        requireNonNull(name, "name is null");
        options = Map.copyOf(options);
    }

    /** @param option how messages name the command-line option, e.g. {@code --backend} */
    static PluginSpec parse(String option, String text)
    {
        int colon = text.indexOf(':');
        String name = (colon < 0 ? text : text.substring(0, colon)).trim();
        if (!NAME.matcher(name).matches()) {
            throw new UserException("bad " + option + " '" + text + "': expected " + SYNTAX + ", e.g. io_uring or io_uring:uring-sqpoll");
        }
        Map<String, String> options = new LinkedHashMap<>();
        if (colon >= 0) {
            for (String part : ExportSpec.split(text.substring(colon + 1))) {
                if (part.isBlank()) {
                    continue;
                }
                int equals = part.indexOf('=');
                String key = (equals < 0 ? part : part.substring(0, equals)).trim();
                String value = equals < 0 ? "true" : part.substring(equals + 1);
                if (options.put(key, value) != null) {
                    throw new UserException("bad " + option + " '" + text + "': " + key + " given twice");
                }
            }
        }
        return new PluginSpec(name, options);
    }
}
