package dev.jloop.dist;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Sizes as users write them for qemu-img and nbdkit: {@code 1048576}, {@code 512K}, {@code 1G}, {@code 2GiB}. Binary units. */
final class Sizes
{
    private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(?:([kmgtpe])(?:i?b)?|b)?", Pattern.CASE_INSENSITIVE);

    private Sizes() {}

    static long parse(String text)
    {
        Matcher m = SIZE.matcher(text.trim());
        if (!m.matches()) {
            throw new UserException("bad size '" + text + "': expected a number of bytes with an optional K, M, G, T, P or E suffix, e.g. 1G");
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
            throw new UserException("bad size '" + text + "': too large");
        }
    }

    static String format(long bytes)
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
