package dev.jloop.ublk;

import dev.jloop.api.Errno;

import java.io.IOException;

/** A ublk control command or device operation the kernel refused, with its name and errno. */
public final class UblkException
        extends IOException
{
    private final int errno;

    UblkException(String message, int errno)
    {
        super(message);
        this.errno = Math.abs(errno);
    }

    static final int EACCES = 13;
    static final int EEXIST = 17;
    static final int ENODEV = 19;
    static final int ENOTTY = 25;

    static UblkException of(String what, int res, String hint)
    {
        return new UblkException(what + " failed: " + errnoName(res) + (hint == null ? "" : "; " + hint), res);
    }

    /** {@link Errno#name}, plus the errnos only the ublk driver answers with. */
    static String errnoName(int res)
    {
        return switch (Math.abs(res)) {
            case EACCES -> "EACCES";
            case EEXIST -> "EEXIST";
            case ENODEV -> "ENODEV";
            case ENOTTY -> "ENOTTY";
            default -> Errno.name(res);
        };
    }

    /** The positive errno. */
    public int errno()
    {
        return errno;
    }
}
