package dev.jloop.api;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.Locale;
import java.util.Objects;

/**
 * Linux errno values as jloop passes them around: every operation that can fail returns or carries
 * {@code -errno}, and only the frontends translate it (to an NBD error or a ublk result).
 *
 * <p>These are the values a backend returns through the SPI. They are written out here because
 * {@code api} depends on nothing: a third-party backend names its errors without a native library.
 * They are also the only errno numbers written by hand in jloop, and their only list: {@link #name}
 * takes the names from the declarations below instead of a second table that could drift from them.
 * The native layer ({@code jloop-posix}) takes the values and names of every other errno from the
 * platform's table (jnr-constants, generated from the C library's {@code errno.h}) and its text from
 * the C library's {@code strerror}; its tests check each value and name here against that table.
 */
public final class Errno
{
    public static final int EPERM = 1;
    public static final int ENOENT = 2;
    public static final int EINTR = 4;
    public static final int EIO = 5;
    public static final int EBADF = 9;
    public static final int EAGAIN = 11;
    public static final int ENOMEM = 12;
    public static final int EFAULT = 14;
    public static final int EBUSY = 16;
    public static final int EINVAL = 22;
    public static final int EFBIG = 27;
    public static final int ENOSPC = 28;
    public static final int EROFS = 30;
    public static final int ENOSYS = 38;
    public static final int ENODATA = 61;
    public static final int EOVERFLOW = 75;
    public static final int EOPNOTSUPP = 95;
    public static final int ESHUTDOWN = 108;
    public static final int ECANCELED = 125;
    /**
     * Linux uses one number for ENOTSUP and EOPNOTSUPP. The kernel's headers define only EOPNOTSUPP
     * ({@code include/uapi/asm-generic/errno.h}), so that is the name {@link #name} gives it.
     */
    public static final int ENOTSUP = EOPNOTSUPP;

    private static final String[] NAMES = names();

    private Errno() {}

    /** The symbolic name of a positive or negative errno value, e.g. {@code "EIO"}; {@code "errno N"} when unknown. */
    /**
     * The number of an errno name ({@code EIO}, {@code eio}, {@code ENOSPC}...), as users write it
     * in options.
     *
     * @throws IllegalArgumentException for a name this class does not know, listing the known ones
     */
    public static int byName(String name)
    {
        String wanted = name.trim().toUpperCase(Locale.ROOT);
        for (int e = 0; e < NAMES.length; e++) {
            if (wanted.equals(NAMES[e])) {
                return e;
            }
        }
        throw new IllegalArgumentException("unknown errno '" + name + "'; known: "
                + String.join(", ", Arrays.stream(NAMES).filter(Objects::nonNull).toList()));
    }

    public static String name(long errno)
    {
        int e = (int) Math.abs(errno);
        String name = e < NAMES.length ? NAMES[e] : null;
        return name != null ? name : "errno " + e;
    }

    /** The names of the constants above, by value: the declarations are the one list. */
    private static String[] names()
    {
        String[] names = new String[128];
        for (Field field : Errno.class.getFields()) {
            if (field.getType() != int.class || !Modifier.isStatic(field.getModifiers()) || field.getName().equals("ENOTSUP")) {
                continue;
            }
            try {
                int value = field.getInt(null);
                if (value >= names.length) {
                    names = Arrays.copyOf(names, value + 1);
                }
                names[value] = field.getName();
            }
            catch (IllegalAccessException e) {
                throw new AssertionError(e);
            }
        }
        return names;
    }
}
