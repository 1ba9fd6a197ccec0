package dev.jloop.api;

/**
 * Linux errno values as jloop passes them around: every operation that can fail returns or carries
 * {@code -errno}, and only the frontends translate it (to an NBD error or a ublk result).
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
    /** Linux uses one number for ENOTSUP and EOPNOTSUPP. */
    public static final int ENOTSUP = EOPNOTSUPP;

    private Errno() {}

    /** The symbolic name of a positive or negative errno value, e.g. {@code "EIO"}; {@code "errno N"} when unknown. */
    public static String name(long errno)
    {
        int e = (int) Math.abs(errno);
        switch (e) {
            case EPERM: return "EPERM";
            case ENOENT: return "ENOENT";
            case EINTR: return "EINTR";
            case EIO: return "EIO";
            case EBADF: return "EBADF";
            case EAGAIN: return "EAGAIN";
            case ENOMEM: return "ENOMEM";
            case EFAULT: return "EFAULT";
            case EBUSY: return "EBUSY";
            case EINVAL: return "EINVAL";
            case EFBIG: return "EFBIG";
            case ENOSPC: return "ENOSPC";
            case EROFS: return "EROFS";
            case ENOSYS: return "ENOSYS";
            case ENODATA: return "ENODATA";
            case EOVERFLOW: return "EOVERFLOW";
            case EOPNOTSUPP: return "EOPNOTSUPP";
            case ESHUTDOWN: return "ESHUTDOWN";
            case ECANCELED: return "ECANCELED";
            default: return "errno " + e;
        }
    }
}
