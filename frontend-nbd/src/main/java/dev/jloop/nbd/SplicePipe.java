package dev.jloop.nbd;

import dev.jloop.posix.Errors;
import dev.jloop.posix.Posix;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A pipe that the zero-copy paths ({@link SplicedReads}, {@link SplicedWrites}) splice through: its
 * two descriptors and the capacity the kernel granted it. Loop thread only.
 */
abstract class SplicePipe
{
    /**
     * The capacity asked for: 1 MiB, the default {@code /proc/sys/fs/pipe-max-size}. Where the system
     * refuses it (an unprivileged user over {@code pipe-user-pages-soft}), the pipe keeps the size it
     * got, at least a page.
     */
    static final int SIZE = 1 << 20;
    static final int PAGE = 4096;

    int readFd = -1;
    int writeFd = -1;
    int size;
    /** The request whose data is in or on its way through the pipe, or null. */
    NbdRequest current;

    /** Whether an operation on this pipe is on the ring. */
    abstract boolean posted();

    /** Makes the pipe; returns why it cannot, or {@code null}. {@code purpose} names its use in that reason. */
    String open(String purpose)
    {
        ByteBuffer fds = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
        int res = Posix.pipe2(UnsafeAccess.address(fds), Posix.O_CLOEXEC);
        if (res < 0) {
            return "cannot make a pipe for " + purpose + ": " + Errors.name(res);
        }
        readFd = fds.getInt(0);
        writeFd = fds.getInt(4);
        int granted = Posix.fcntl(writeFd, Posix.F_SETPIPE_SZ, SIZE);
        if (granted < 0) {
            granted = Posix.fcntl(writeFd, Posix.F_GETPIPE_SZ, 0);
        }
        size = Math.max(granted, PAGE);
        return null;
    }

    boolean isOpen()
    {
        return readFd >= 0;
    }

    /** Closes both ends, if open; the caller knows no splice on the ring uses them any more. */
    void close()
    {
        if (readFd >= 0) {
            Posix.close(readFd);
            Posix.close(writeFd);
            readFd = -1;
            writeFd = -1;
        }
    }

    /** Makes every pipe; returns why it cannot (closing those made), or {@code null}. */
    static String openAll(SplicePipe[] pipes, String purpose)
    {
        for (SplicePipe pipe : pipes) {
            String cause = pipe.open(purpose);
            if (cause != null) {
                closeAll(pipes);
                return cause;
            }
        }
        return null;
    }

    /** Closes every pipe; the caller knows no splice on the ring uses them any more. */
    static void closeAll(SplicePipe[] pipes)
    {
        for (SplicePipe pipe : pipes) {
            pipe.close();
        }
    }

    /** Whether an operation of any of the pipes is on the ring. */
    static boolean anyPosted(SplicePipe[] pipes)
    {
        for (SplicePipe pipe : pipes) {
            if (pipe.posted()) {
                return true;
            }
        }
        return false;
    }

    /** Whether no pipe has a request or an operation on the ring. */
    static boolean allIdle(SplicePipe[] pipes)
    {
        for (SplicePipe pipe : pipes) {
            if (pipe.current != null || pipe.posted()) {
                return false;
            }
        }
        return true;
    }
}
