package dev.jloop.posix;

import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;

/**
 * {@link dev.jloop.api.BackingFile#extents} for a file descriptor, with {@code lseek(2)}
 * {@code SEEK_DATA}/{@code SEEK_HOLE}: holes are reported as {@code HOLE | ZERO}, everything else as
 * data. Where the file system cannot tell (EINVAL, EOPNOTSUPP) the whole range is data, which is
 * always a correct answer.
 */
public final class Extents
{
    private Extents() {}

    /** Reports {@code [offset, offset + length)} to {@code sink}; returns 0 or {@code -errno}. */
    public static long report(int fd, long offset, long length, ExtentSink sink)
    {
        if (offset < 0 || length < 0) {
            return -Errno.EINVAL;
        }
        long end = offset + length;
        long pos = offset;
        while (pos < end) {
            long data = Posix.lseek(fd, pos, Posix.SEEK_DATA);
            if (data == -Errors.ENXIO) {
                // No data at or after pos: the rest, up to end of file and beyond, reads as zeros.
                sink.extent(pos, end - pos, ExtentSink.HOLE | ExtentSink.ZERO);
                return 0;
            }
            if (data == -Errno.EINVAL || data == -Errno.EOPNOTSUPP) {
                sink.extent(pos, end - pos, ExtentSink.DATA);
                return 0;
            }
            if (data < 0) {
                return data;
            }
            if (data > pos) {
                long holeEnd = Math.min(data, end);
                if (!sink.extent(pos, holeEnd - pos, ExtentSink.HOLE | ExtentSink.ZERO)) {
                    return 0;
                }
                pos = holeEnd;
                if (pos >= end) {
                    return 0;
                }
            }
            long hole = Posix.lseek(fd, pos, Posix.SEEK_HOLE);
            if (hole == -Errors.ENXIO) {
                // The file shrank under us; what is past its end reads as zeros.
                continue;
            }
            if (hole < 0) {
                return hole;
            }
            long dataEnd = Math.min(Math.max(hole, pos + 1), end);
            if (!sink.extent(pos, dataEnd - pos, ExtentSink.DATA)) {
                return 0;
            }
            pos = dataEnd;
        }
        return 0;
    }
}
