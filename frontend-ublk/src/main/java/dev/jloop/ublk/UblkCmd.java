package dev.jloop.ublk;

/**
 * Constants of the ublk driver's UAPI ({@code include/uapi/linux/ublk_cmd.h}): command numbers in both
 * encodings, feature flags, parameter types and attributes, request ops and flags, results.
 *
 * <p>Commands exist in two encodings: the legacy one is the bare number; from Linux 6.4
 * ({@link #F_CMD_IOCTL_ENCODE}) the ioctl form {@code dir << 30 | size << 16 | 'u' << 8 | nr} is
 * preferred (the legacy numbers need {@code CONFIG_BLKDEV_UBLK_LEGACY_OPCODES}).
 */
public final class UblkCmd
{
    // control commands (nr), struct ublksrv_ctrl_cmd is their payload
    public static final int CMD_GET_QUEUE_AFFINITY = 0x01;
    public static final int CMD_GET_DEV_INFO = 0x02;
    public static final int CMD_ADD_DEV = 0x04;
    public static final int CMD_DEL_DEV = 0x05;
    public static final int CMD_START_DEV = 0x06;
    public static final int CMD_STOP_DEV = 0x07;
    public static final int CMD_SET_PARAMS = 0x08;
    public static final int CMD_GET_PARAMS = 0x09;
    /** Linux 6.1+: a new server takes over a device whose server died (state QUIESCED). */
    public static final int CMD_START_USER_RECOVERY = 0x10;
    /** Waits until the new server has fetched every tag, then serves the waiting requests again. */
    public static final int CMD_END_USER_RECOVERY = 0x11;
    public static final int CMD_GET_DEV_INFO2 = 0x12;
    public static final int CMD_GET_FEATURES = 0x13;
    /** DEL_DEV without waiting for the last reference to the device (Linux 6.9+). */
    public static final int CMD_DEL_DEV_ASYNC = 0x14;

    // I/O commands (nr), struct ublksrv_io_cmd is their payload
    public static final int IO_FETCH_REQ = 0x20;
    public static final int IO_COMMIT_AND_FETCH_REQ = 0x21;
    public static final int IO_NEED_GET_DATA = 0x22;

    public static final int CTRL_CMD_SIZE = 32;
    public static final int IO_CMD_SIZE = 16;
    public static final int DEV_INFO_SIZE = 64;
    public static final int PARAMS_SIZE = 152;
    public static final int IO_DESC_SIZE = 24;
    /** The per-queue stride of the descriptor mmap, {@code UBLK_MAX_QUEUE_DEPTH * sizeof(ublksrv_io_desc)} page-rounded. */
    public static final long DESC_QUEUE_STRIDE = 4096L * IO_DESC_SIZE;
    public static final int MAX_QUEUE_DEPTH = 4096;

    // feature flags (ublksrv_ctrl_dev_info.flags, GET_FEATURES)
    public static final long F_SUPPORT_ZERO_COPY = 1L;
    public static final long F_URING_CMD_COMP_IN_TASK = 1L << 1;
    public static final long F_NEED_GET_DATA = 1L << 2;
    public static final long F_USER_RECOVERY = 1L << 3;
    /** With USER_RECOVERY: requests in flight when the server died are issued again to the next one. */
    public static final long F_USER_RECOVERY_REISSUE = 1L << 4;
    public static final long F_UNPRIVILEGED_DEV = 1L << 5;
    public static final long F_CMD_IOCTL_ENCODE = 1L << 6;
    public static final long F_USER_COPY = 1L << 7;

    // ublksrv_ctrl_dev_info.state
    public static final int DEV_DEAD = 0;
    public static final int DEV_LIVE = 1;
    public static final int DEV_QUIESCED = 2;
    public static final int DEV_FAIL_IO = 3;

    // struct ublk_params
    public static final int PARAM_TYPE_BASIC = 1;
    public static final int PARAM_TYPE_DISCARD = 2;
    public static final int ATTR_READ_ONLY = 1;
    public static final int ATTR_ROTATIONAL = 1 << 1;
    public static final int ATTR_VOLATILE_CACHE = 1 << 2;
    public static final int ATTR_FUA = 1 << 3;

    // ublksrv_io_desc.op_flags: op in bits 0-7, flags above
    public static final int OP_READ = 0;
    public static final int OP_WRITE = 1;
    public static final int OP_FLUSH = 2;
    public static final int OP_DISCARD = 3;
    public static final int OP_WRITE_SAME = 4;
    public static final int OP_WRITE_ZEROES = 5;
    public static final int IO_F_FUA = 1 << 13;
    public static final int IO_F_NOUNMAP = 1 << 15;

    /** cqe.res of a FETCH: the request is aborted, the device is going away ({@code UBLK_IO_RES_ABORT}). */
    public static final int IO_RES_OK = 0;
    public static final int IO_RES_NEED_GET_DATA = 1;

    private static final int IOC_WRITE = 1;
    private static final int IOC_READ = 2;

    private UblkCmd() {}

    /** The ioctl-encoded form of a control command ({@code UBLK_U_CMD_*}). */
    public static int ioctlControl(int nr)
    {
        int dir = switch (nr) {
            case CMD_GET_QUEUE_AFFINITY, CMD_GET_DEV_INFO, CMD_GET_PARAMS, CMD_GET_FEATURES, CMD_GET_DEV_INFO2, CMD_DEL_DEV_ASYNC -> IOC_READ;
            default -> IOC_READ | IOC_WRITE;
        };
        return ioc(dir, CTRL_CMD_SIZE, nr);
    }

    /** The ioctl-encoded form of an I/O command ({@code UBLK_U_IO_*}). */
    public static int ioctlIo(int nr)
    {
        return ioc(IOC_READ | IOC_WRITE, IO_CMD_SIZE, nr);
    }

    /** The name of a device state ({@code UBLK_S_DEV_*}) as {@code jloop ublk list} shows it. */
    public static String stateName(int state)
    {
        return switch (state) {
            case DEV_DEAD -> "dead";
            case DEV_LIVE -> "live";
            case DEV_QUIESCED -> "quiesced";
            case DEV_FAIL_IO -> "fail-io";
            default -> "state " + state;
        };
    }

    /** The feature bits jloop knows by name, for the log. */
    public static String featureNames(long features)
    {
        String[] names = {"zero-copy", "comp-in-task", "need-get-data", "user-recovery", "user-recovery-reissue", "unprivileged-dev",
                "cmd-ioctl-encode", "user-copy", "zoned", "user-recovery-fail-io"};
        StringBuilder text = new StringBuilder();
        for (int bit = 0; bit < 64; bit++) {
            if ((features & 1L << bit) != 0) {
                text.append(text.length() == 0 ? "" : " ").append(bit < names.length ? names[bit] : "bit" + bit);
            }
        }
        return text.toString();
    }

    private static int ioc(int dir, int size, int nr)
    {
        return dir << 30 | size << 16 | 'u' << 8 | nr;
    }

    public static String controlName(int nr)
    {
        return switch (nr) {
            case CMD_GET_QUEUE_AFFINITY -> "GET_QUEUE_AFFINITY";
            case CMD_GET_DEV_INFO -> "GET_DEV_INFO";
            case CMD_ADD_DEV -> "ADD_DEV";
            case CMD_DEL_DEV -> "DEL_DEV";
            case CMD_START_DEV -> "START_DEV";
            case CMD_STOP_DEV -> "STOP_DEV";
            case CMD_SET_PARAMS -> "SET_PARAMS";
            case CMD_GET_PARAMS -> "GET_PARAMS";
            case CMD_START_USER_RECOVERY -> "START_USER_RECOVERY";
            case CMD_END_USER_RECOVERY -> "END_USER_RECOVERY";
            case CMD_GET_FEATURES -> "GET_FEATURES";
            case CMD_GET_DEV_INFO2 -> "GET_DEV_INFO2";
            case CMD_DEL_DEV_ASYNC -> "DEL_DEV_ASYNC";
            default -> "0x" + Integer.toHexString(nr);
        };
    }
}
