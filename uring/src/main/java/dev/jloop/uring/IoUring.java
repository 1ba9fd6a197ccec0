package dev.jloop.uring;

import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * io_uring constants ({@code include/uapi/linux/io_uring.h}) and the one probe of whether io_uring
 * works here, run once when this class is loaded: the setup of a tiny ring. It fails where the kernel
 * lacks io_uring, where seccomp blocks it (Docker's and containerd's default profiles since 2023) or
 * where {@code kernel.io_uring_disabled} turns it off (6.6+, {@code Documentation/admin-guide/sysctl/kernel.rst}).
 */
public final class IoUring
{
    // Opcodes (enum io_uring_op)
    public static final int OP_NOP = 0;
    public static final int OP_READV = 1;
    public static final int OP_WRITEV = 2;
    public static final int OP_FSYNC = 3;
    public static final int OP_READ_FIXED = 4;
    public static final int OP_WRITE_FIXED = 5;
    public static final int OP_POLL_ADD = 6;
    public static final int OP_SENDMSG = 9;
    public static final int OP_RECVMSG = 10;
    public static final int OP_TIMEOUT = 11;
    public static final int OP_ASYNC_CANCEL = 14;
    public static final int OP_FALLOCATE = 17;
    public static final int OP_READ = 22;
    public static final int OP_WRITE = 23;
    public static final int OP_SEND = 26;
    public static final int OP_RECV = 27;
    public static final int OP_SPLICE = 30;
    public static final int OP_MSG_RING = 40;
    public static final int OP_URING_CMD = 46;

    // io_uring_setup(2) flags
    public static final int SETUP_IOPOLL = 1;
    public static final int SETUP_SQPOLL = 1 << 1;
    public static final int SETUP_SQ_AFF = 1 << 2;
    public static final int SETUP_CQSIZE = 1 << 3;
    public static final int SETUP_CLAMP = 1 << 4;
    public static final int SETUP_SUBMIT_ALL = 1 << 7;
    public static final int SETUP_COOP_TASKRUN = 1 << 8;
    /** With COOP_TASKRUN: the kernel sets {@link #SQ_TASKRUN} in the SQ ring's flags while work items wait for an enter. */
    public static final int SETUP_TASKRUN_FLAG = 1 << 9;
    public static final int SETUP_SQE128 = 1 << 10;
    public static final int SETUP_CQE32 = 1 << 11;
    public static final int SETUP_SINGLE_ISSUER = 1 << 12;
    public static final int SETUP_DEFER_TASKRUN = 1 << 13;

    // io_uring_params.features
    public static final int FEAT_SINGLE_MMAP = 1;
    public static final int FEAT_NODROP = 1 << 1;
    public static final int FEAT_SUBMIT_STABLE = 1 << 2;

    // io_uring_enter(2) flags
    public static final int ENTER_GETEVENTS = 1;
    public static final int ENTER_SQ_WAKEUP = 1 << 1;

    // sq ring flags
    public static final int SQ_NEED_WAKEUP = 1;
    public static final int SQ_CQ_OVERFLOW = 1 << 1;
    public static final int SQ_TASKRUN = 1 << 2;

    // sqe->flags
    public static final int IOSQE_FIXED_FILE = 1;
    public static final int IOSQE_IO_DRAIN = 1 << 1;
    public static final int IOSQE_IO_LINK = 1 << 2;
    /** Take the buffer from the provided-buffer group in {@code sqe->buf_group} (5.7+; rings of them 5.19+). */
    public static final int IOSQE_BUFFER_SELECT = 1 << 5;

    /** {@code sqe->ioprio} of a RECV: stay armed, one CQE per received chunk, each in a provided buffer (6.0+). */
    public static final int RECV_MULTISHOT = 1 << 1;

    // cqe->flags
    /** The upper 16 bits of {@code cqe->flags} are the id of the provided buffer the data went into. */
    public static final int CQE_F_BUFFER = 1;
    /** More CQEs follow for this SQE: a multishot operation is still armed. */
    public static final int CQE_F_MORE = 1 << 1;
    public static final int CQE_BUFFER_SHIFT = 16;

    // sqe->fsync_flags
    public static final int FSYNC_DATASYNC = 1;
    /** sqe->poll32_events of {@link #OP_POLL_ADD}: readable ({@code poll(2)}'s {@code POLLIN}). */
    public static final int POLLIN = 1;

    // sqe->cancel_flags
    public static final int ASYNC_CANCEL_ALL = 1;
    public static final int ASYNC_CANCEL_FD = 1 << 1;
    public static final int ASYNC_CANCEL_ANY = 1 << 2;
    public static final int ASYNC_CANCEL_FD_FIXED = 1 << 3;

    // io_uring_register(2) opcodes
    public static final int REGISTER_BUFFERS = 0;
    public static final int UNREGISTER_BUFFERS = 1;
    public static final int REGISTER_FILES = 2;
    public static final int UNREGISTER_FILES = 3;
    public static final int REGISTER_PROBE = 8;
    public static final int REGISTER_PBUF_RING = 22;
    public static final int UNREGISTER_PBUF_RING = 23;

    // sqe->splice_flags: splice(2)'s SPLICE_F_* (linux/splice.h), and io_uring's own for a fixed fd_in
    public static final int SPLICE_F_MOVE = 1;
    public static final int SPLICE_F_NONBLOCK = 1 << 1;
    public static final int SPLICE_F_MORE = 1 << 2;
    public static final int SPLICE_F_FD_IN_FIXED = 1 << 31;

    /** {@code MSG_NOSIGNAL} of {@code send(2)}, valid in {@code sqe->msg_flags}: a closed peer is EPIPE, not SIGPIPE. */
    public static final int MSG_NOSIGNAL = 0x4000;

    /** {@code RWF_DSYNC} of {@code pwritev2(2)}, valid in {@code sqe->rw_flags}. */
    public static final int RWF_DSYNC = 0x2;

    private static final String UNAVAILABILITY_CAUSE = probe();

    private IoUring() {}

    /** Whether io_uring rings can be set up on this machine. */
    public static boolean isAvailable()
    {
        return UNAVAILABILITY_CAUSE == null;
    }

    /** Why io_uring cannot be used here, or {@code null} when it can. */
    public static String unavailabilityCause()
    {
        return UNAVAILABILITY_CAUSE;
    }

    /**
     * Why multishot receive into a ring of provided buffers ({@link Ring#prepRecvMultishot}, {@link BufferRing})
     * cannot be used here, or {@code null} when it can: it needs Linux 6.0 (multishot RECV) and 5.19
     * (buffer rings). Probed once, on first use: the kernel release, then the registration of a buffer ring.
     */
    public static String multishotReceiveUnavailabilityCause()
    {
        return MultishotProbe.CAUSE;
    }

    private static final class MultishotProbe
    {
        static final String CAUSE = probeMultishotReceive();
    }

    private static String probeMultishotReceive()
    {
        if (!isAvailable()) {
            return unavailabilityCause();
        }
        String release = System.getProperty("os.version", "");
        Matcher version = Pattern.compile("^(\\d+)\\.(\\d+)").matcher(release);
        if (!version.find() || Integer.parseInt(version.group(1)) < 6) {
            return "multishot receive needs Linux 6.0 or later, not " + release;
        }
        try (Ring ring = Ring.builder(2).open();
                BufferRing buffers = BufferRing.register(ring, 0, 1)) {
            return null;
        }
        catch (NativeIoException e) {
            return e.getMessage();
        }
        catch (LinkageError | RuntimeException e) {
            return "io_uring buffer rings failed: " + e;
        }
    }

    private static String probe()
    {
        if (!System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).startsWith("linux")) {
            return "io_uring needs Linux, not " + System.getProperty("os.name");
        }
        String arch = System.getProperty("os.arch", "");
        if (!arch.equals("amd64") && !arch.equals("x86_64")) {
            return "io_uring syscall numbers are only known for x86_64, not " + arch;
        }
        try (Ring ring = Ring.builder(2).open()) {
            if (!ring.isSupported(OP_READ) || !ring.isSupported(OP_FALLOCATE)) {
                return "kernel io_uring lacks IORING_OP_READ/FALLOCATE (needs Linux 5.6 or later)";
            }
            return null;
        }
        catch (NativeIoException e) {
            String disabled = ioUringDisabledSysctl();
            if (e.errno() == Errors.EPERM) {
                return e.getMessage() + ": io_uring is blocked by a seccomp filter (container default profiles block it)"
                        + " or by kernel.io_uring_disabled=" + disabled;
            }
            if (e.errno() == Errors.ENOSYS) {
                return e.getMessage() + ": the kernel has no io_uring, or a seccomp filter hides it";
            }
            return e.getMessage() + " (kernel.io_uring_disabled=" + disabled + ")";
        }
        catch (LinkageError | RuntimeException e) {
            return "io_uring binding failed to load: " + e;
        }
    }

    private static String ioUringDisabledSysctl()
    {
        try {
            return Files.readString(Path.of("/proc/sys/kernel/io_uring_disabled")).trim();
        }
        catch (IOException | RuntimeException e) {
            return "unknown";
        }
    }
}
