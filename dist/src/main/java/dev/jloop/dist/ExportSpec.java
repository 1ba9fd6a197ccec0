package dev.jloop.dist;

import dev.jloop.api.Sizes;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Locale;

import static java.util.Objects.requireNonNull;

/**
 * One export as {@code --export} describes it: {@code NAME=FILE[,size=SIZE][,read-only][,description=TEXT]}.
 * Commas separate the export's own options, as in qemu's {@code --export}; a comma in a file name or
 * description is written twice ({@code ,,}). The name is everything before the first {@code =}.
 *
 * @param size the size to create or grow FILE to, null to serve it as it is
 * @param description what NBD_OPT_LIST and NBD_INFO_DESCRIPTION show, null for "FILE (SIZE)"
 */
record ExportSpec(String name, Path file, String size, boolean readOnly, String description, List<String> filters, Map<String, String> pluginOptions)
{
    static final String SYNTAX = "NAME=FILE[,size=SIZE][,read-only][,description=TEXT][,filter=NAME][,KEY=VALUE]";

    ExportSpec
    {
        requireNonNull(name, "name is null");
        requireNonNull(file, "file is null");
        filters = List.copyOf(filters);
        pluginOptions = Map.copyOf(pluginOptions);
    }

    static boolean isSpec(String text)
    {
        return text.contains("=");
    }

    static ExportSpec parse(String text)
    {
        int equals = text.indexOf('=');
        if (equals < 0) {
            throw new UserException("bad --export '" + text + "': expected " + SYNTAX);
        }
        String name = text.substring(0, equals);
        List<String> parts = split(text.substring(equals + 1));
        if (parts.isEmpty() || parts.get(0).isEmpty()) {
            throw new UserException("bad --export '" + text + "': no file after '" + name + "='; expected " + SYNTAX);
        }
        Path file = Path.of(parts.get(0));
        String size = null;
        boolean readOnly = false;
        String description = null;
        List<String> filters = new ArrayList<>();
        Map<String, String> pluginOptions = new LinkedHashMap<>();
        for (String option : parts.subList(1, parts.size())) {
            int eq = option.indexOf('=');
            String key = (eq < 0 ? option : option.substring(0, eq)).trim().toLowerCase(Locale.ROOT);
            String value = eq < 0 ? null : option.substring(eq + 1);
            switch (key) {
                case "size":
                    size = required(text, key, value);
                    parseSize(size);
                    break;
                case "read-only":
                case "readonly":
                case "ro":
                    readOnly = value == null || parseBoolean(text, key, value);
                    break;
                case "description":
                    description = required(text, key, value);
                    break;
                case "filter":
                    filters.add(required(text, key, value));
                    break;
                default:
                    // an option of the backend's or a filter's for this export; the plugin checks it
                    if (pluginOptions.put(option.substring(0, eq < 0 ? option.length() : eq).trim(), value == null ? "true" : value) != null) {
                        throw new UserException("bad --export '" + text + "': " + key + " given twice");
                    }
            }
        }
        return new ExportSpec(name, file, size, readOnly, description, filters, pluginOptions);
    }

    /** Splits at single commas; {@code ,,} stands for one comma. */
    static List<String> split(String text)
    {
        List<String> parts = new ArrayList<>();
        StringBuilder part = new StringBuilder();
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == ',') {
                if (i + 1 < text.length() && text.charAt(i + 1) == ',') {
                    part.append(',');
                    i++;
                    continue;
                }
                parts.add(part.toString());
                part.setLength(0);
                continue;
            }
            part.append(c);
        }
        parts.add(part.toString());
        return parts;
    }

    private static String required(String text, String key, String value)
    {
        if (value == null || value.isEmpty()) {
            throw new UserException("bad --export '" + text + "': " + key + " needs a value, e.g. " + key + "=" + (key.equals("size") ? "1G" : "TEXT"));
        }
        return value;
    }

    private static boolean parseBoolean(String text, String key, String value)
    {
        switch (value.toLowerCase(Locale.ROOT)) {
            case "on":
            case "true":
            case "yes":
                return true;
            case "off":
            case "false":
            case "no":
                return false;
            default:
                throw new UserException("bad --export '" + text + "': " + key + " is on or off, not '" + value + "'");
        }
    }

    /** A size as the command line takes it; a malformed one is the user's to fix. */
    static long parseSize(String text)
    {
        try {
            return Sizes.parse(text);
        }
        catch (IllegalArgumentException e) {
            throw new UserException(e.getMessage(), e);
        }
    }
}
