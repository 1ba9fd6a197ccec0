package dev.jloop.ublk;

import dev.jloop.posix.NativeIoException;

/**
 * A ublk control command or device operation the kernel refused: its name, the errno and the C
 * library's text for it (worded by {@link dev.jloop.posix.Errors}, like every failed native call),
 * and what the user can do about it where that is known, e.g.
 * {@code "ublk ADD_DEV failed: File exists (EEXIST); ublk device id 5 is in use (...)"}.
 */
public final class UblkException
        extends NativeIoException
{
    /**
     * @param operation the command or call, e.g. {@code "ublk ADD_DEV"}, {@code "open /dev/ublk-control"}
     * @param res its result, a negative errno
     * @param hint what to do about it, or {@code null}
     */
    UblkException(String operation, long res, String hint)
    {
        super(operation, res, hint);
    }
}
