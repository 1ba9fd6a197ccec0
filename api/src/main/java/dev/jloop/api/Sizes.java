package dev.jloop.api;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Sizes and counts as users write them for qemu-img and nbdkit: {@code 1048576}, {@code 512K},
 * {@code 1G}, {@code 2GiB}; binary units. The one parser of the command line, of exports and of every
 * plugin's options.
 */
public final class Sizes
{
    private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(?:([kmgtpe])(?:i?b)?|b)?", Pattern.CASE_INSENSITIVE);
    private static final Pattern COUNT = Pattern.compile("\\d+");
    private static final Pattern DURATION = Pattern.compile("(\\d+)\\s*(ms|s|m|h)?", Pattern.CASE_INSENSITIVE);

    private Sizes() {}

    /**
     * Bytes, with an optional K, M, G, T, P or E suffix.
     *
     * @throws IllegalArgumentException naming the text and what was expected
     */
    public static long parse(String text)
    {
        Matcher m = SIZE.matcher(text.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("bad size '" + text + "': expected a number of bytes with an optional K, M, G, T, P or E suffix, e.g. 1G");
        }
        int shift = m.group(2) == null ? 0 : 10 * ("kmgtpe".indexOf(m.group(2).toLowerCase(Locale.ROOT)) + 1);
        try {
            long value = Long.parseLong(m.group(1));
            if (value > (Long.MAX_VALUE >> shift)) {
                throw new NumberFormatException();
            }
            return value << shift;
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad size '" + text + "': too large");
        }
    }

    /**
     * A whole number from 0 up to {@code Integer.MAX_VALUE}.
     *
     * @throws IllegalArgumentException naming the text and what was expected
     */
    public static int parseCount(String text)
    {
        String trimmed = text.trim();
        if (!COUNT.matcher(trimmed).matches()) {
            throw new IllegalArgumentException("bad number '" + text + "': expected a whole number, 0 or more");
        }
        try {
            return Integer.parseInt(trimmed);
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad number '" + text + "': too large");
        }
    }

    /**
     * A duration in milliseconds: a whole number with {@code ms}, {@code s}, {@code m} or {@code h};
     * a bare number is seconds, as the timeouts of qemu-nbd and nbdkit take it.
     *
     * @throws IllegalArgumentException naming the text and what was expected
     */
    public static long parseMillis(String text)
    {
        Matcher m = DURATION.matcher(text.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("bad duration '" + text + "': expected a whole number of seconds, or one with ms, s, m or h, e.g. 30s");
        }
        String unit = m.group(2) == null ? "s" : m.group(2).toLowerCase(Locale.ROOT);
        long scale = switch (unit) {
            case "ms" -> 1;
            case "s" -> 1000;
            case "m" -> 60_000;
            default -> 3_600_000;
        };
        try {
            return Math.multiplyExact(Long.parseLong(m.group(1)), scale);
        }
        catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("bad duration '" + text + "': too large");
        }
    }

    /** {@code 1 GiB}, {@code 1.5 MiB}, {@code 512 B}: for start lines and descriptions. */
    public static String format(long bytes)
    {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        int unit = 0;
        double value = bytes;
        while (value >= 1024 && unit < units.length - 1) {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? bytes + " B" : (value == Math.floor(value) ? String.format(Locale.ROOT, "%.0f %s", value, units[unit]) : String.format(Locale.ROOT, "%.1f %s", value, units[unit]));
    }
}
