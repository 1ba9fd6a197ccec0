package dev.jloop.ublk;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The byte layout of the structs the ublk driver exchanges ({@code include/uapi/linux/ublk_cmd.h}),
 * written and read at absolute offsets of native-order buffers, so that the same code fills an SQE's
 * command area and a test's golden byte array.
 */
final class UblkStructs
{
    /** {@code ublksrv_ctrl_cmd.queue_id} for commands that concern no queue. */
    static final int NO_QUEUE = 0xffff;

    private UblkStructs() {}

    static ByteBuffer allocate(int size)
    {
        return ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder());
    }

    /**
     * {@code struct ublksrv_ctrl_cmd} (32 bytes): dev_id u32 @0, queue_id u16 @4, len u16 @6, addr u64 @8,
     * data[0] u64 @16, dev_path_len u16 @24, pad @26, reserved u32 @28.
     */
    static void putCtrlCmd(ByteBuffer dst, int base, int devId, int queueId, int len, long addr, long data0)
    {
        for (int i = 0; i < UblkCmd.CTRL_CMD_SIZE; i += 8) {
            dst.putLong(base + i, 0);
        }
        dst.putInt(base, devId);
        dst.putShort(base + 4, (short) queueId);
        dst.putShort(base + 6, (short) len);
        dst.putLong(base + 8, addr);
        dst.putLong(base + 16, data0);
    }

    /** {@code struct ublksrv_io_cmd} (16 bytes): q_id u16 @0, tag u16 @2, result s32 @4, addr u64 @8. */
    static void putIoCmd(ByteBuffer dst, int base, int queueId, int tag, int result, long addr)
    {
        dst.putShort(base, (short) queueId);
        dst.putShort(base + 2, (short) tag);
        dst.putInt(base + 4, result);
        dst.putLong(base + 8, addr);
    }

    /** {@code struct ublksrv_ctrl_dev_info} (64 bytes). */
    record DevInfo(int nrHwQueues, int queueDepth, int state, int maxIoBufBytes, int devId, int ublksrvPid, long flags,
            int ownerUid, int ownerGid)
    {
        void write(ByteBuffer dst)
        {
            for (int i = 0; i < UblkCmd.DEV_INFO_SIZE; i += 8) {
                dst.putLong(i, 0);
            }
            dst.putShort(0, (short) nrHwQueues);
            dst.putShort(2, (short) queueDepth);
            dst.putShort(4, (short) state);
            dst.putInt(8, maxIoBufBytes);
            dst.putInt(12, devId);
            dst.putInt(16, ublksrvPid);
            dst.putLong(24, flags);
            dst.putInt(40, ownerUid);
            dst.putInt(44, ownerGid);
        }

        static DevInfo read(ByteBuffer src)
        {
            return new DevInfo(src.getShort(0) & 0xffff, src.getShort(2) & 0xffff, src.getShort(4) & 0xffff, src.getInt(8),
                    src.getInt(12), src.getInt(16), src.getLong(24), src.getInt(40), src.getInt(44));
        }
    }

    /**
     * {@code struct ublk_params}: len u32 @0, types u32 @4, basic @8 (32 bytes), discard @40 (20 bytes).
     * Only BASIC and DISCARD are sent; the kernel clamps {@code len} to the size it knows.
     */
    record Params(int attrs, int logicalBsShift, int physicalBsShift, int ioOptShift, int ioMinShift, int maxSectors,
            long devSectors, boolean discard, int discardGranularity, int maxDiscardSectors, int maxWriteZeroesSectors)
    {
        void write(ByteBuffer dst)
        {
            for (int i = 0; i < UblkCmd.PARAMS_SIZE; i += 8) {
                dst.putLong(i, 0);
            }
            dst.putInt(0, UblkCmd.PARAMS_SIZE);
            dst.putInt(4, UblkCmd.PARAM_TYPE_BASIC | (discard ? UblkCmd.PARAM_TYPE_DISCARD : 0));
            // struct ublk_param_basic
            dst.putInt(8, attrs);
            dst.put(12, (byte) logicalBsShift);
            dst.put(13, (byte) physicalBsShift);
            dst.put(14, (byte) ioOptShift);
            dst.put(15, (byte) ioMinShift);
            dst.putInt(16, maxSectors);
            dst.putInt(20, 0); // chunk_sectors
            dst.putLong(24, devSectors);
            dst.putLong(32, 0); // virt_boundary_mask
            if (discard) {
                // struct ublk_param_discard
                dst.putInt(40, 0); // discard_alignment
                dst.putInt(44, discardGranularity);
                dst.putInt(48, maxDiscardSectors);
                dst.putInt(52, maxWriteZeroesSectors);
                dst.putShort(56, (short) 1); // max_discard_segments: the driver takes one range per request
            }
        }
    }

    /** {@code struct ublksrv_io_desc} (24 bytes) of one tag: op_flags u32 @0, nr_sectors u32 @4, start_sector u64 @8, addr u64 @16. */
    static int descOpFlags(ByteBuffer descs, int tag)
    {
        return descs.getInt(tag * UblkCmd.IO_DESC_SIZE);
    }

    static int descNrSectors(ByteBuffer descs, int tag)
    {
        return descs.getInt(tag * UblkCmd.IO_DESC_SIZE + 4);
    }

    static long descStartSector(ByteBuffer descs, int tag)
    {
        return descs.getLong(tag * UblkCmd.IO_DESC_SIZE + 8);
    }
}
