package dev.jloop.ublk;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Golden bytes of every struct and command number, with offsets from {@code include/uapi/linux/ublk_cmd.h}
 * as checked with {@code offsetof} (little-endian x86_64).
 */
class TestUblkStructs
{
    private static byte[] hex(String text)
    {
        return HexFormat.of().parseHex(text.replace(" ", ""));
    }

    private static byte[] bytes(ByteBuffer buffer, int length)
    {
        byte[] out = new byte[length];
        buffer.duplicate().position(0).get(out);
        return out;
    }

    @Test
    void commandNumbers()
    {
        // UBLK_U_CMD_* and UBLK_U_IO_* from ublk_cmd.h
        assertEquals(0x80207501, UblkCmd.ioctlControl(UblkCmd.CMD_GET_QUEUE_AFFINITY));
        assertEquals(0x80207502, UblkCmd.ioctlControl(UblkCmd.CMD_GET_DEV_INFO));
        assertEquals(0xc0207504, UblkCmd.ioctlControl(UblkCmd.CMD_ADD_DEV));
        assertEquals(0xc0207505, UblkCmd.ioctlControl(UblkCmd.CMD_DEL_DEV));
        assertEquals(0xc0207506, UblkCmd.ioctlControl(UblkCmd.CMD_START_DEV));
        assertEquals(0xc0207507, UblkCmd.ioctlControl(UblkCmd.CMD_STOP_DEV));
        assertEquals(0xc0207508, UblkCmd.ioctlControl(UblkCmd.CMD_SET_PARAMS));
        assertEquals(0x80207509, UblkCmd.ioctlControl(UblkCmd.CMD_GET_PARAMS));
        assertEquals(0x80207513, UblkCmd.ioctlControl(UblkCmd.CMD_GET_FEATURES));
        assertEquals(0xc0107520, UblkCmd.ioctlIo(UblkCmd.IO_FETCH_REQ));
        assertEquals(0xc0107521, UblkCmd.ioctlIo(UblkCmd.IO_COMMIT_AND_FETCH_REQ));
        assertEquals(0xc0107522, UblkCmd.ioctlIo(UblkCmd.IO_NEED_GET_DATA));
    }

    @Test
    void ctrlCmd()
    {
        ByteBuffer cmd = UblkStructs.allocate(32);
        cmd.put(0, hex("ff".repeat(32)));
        UblkStructs.putCtrlCmd(cmd, 0, 7, UblkStructs.NO_QUEUE, 64, 0x1122334455667788L, 0x0102030405060708L);
        assertArrayEquals(hex("07000000 ffff 4000 8877665544332211 0807060504030201 0000 0000 00000000"), bytes(cmd, 32));
    }

    @Test
    void ctrlCmdAtOffsetInsideAnSqe()
    {
        ByteBuffer sqe = UblkStructs.allocate(128);
        UblkStructs.putCtrlCmd(sqe, 48, -1, UblkStructs.NO_QUEUE, 8, 0x1000, 0);
        byte[] all = bytes(sqe, 128);
        byte[] expected = new byte[128];
        System.arraycopy(hex("ffffffff ffff 0800 0010000000000000"), 0, expected, 48, 16);
        assertArrayEquals(expected, all);
    }

    @Test
    void ioCmd()
    {
        ByteBuffer cmd = UblkStructs.allocate(16);
        UblkStructs.putIoCmd(cmd, 0, 3, 0x1234, -5, 0x7f0000001000L);
        assertArrayEquals(hex("0300 3412 fbffffff 0010000000 7f0000"), bytes(cmd, 16));
    }

    @Test
    void devInfoRoundTrip()
    {
        ByteBuffer info = UblkStructs.allocate(64);
        info.put(0, hex("ee".repeat(64)));
        new UblkStructs.DevInfo(2, 128, 0, 512 << 10, -1, 0, UblkCmd.F_CMD_IOCTL_ENCODE, 0, 0).write(info);
        assertArrayEquals(hex("0200 8000 0000 0000 00000800 ffffffff 00000000 00000000 4000000000000000 0000000000000000"
                + " 00000000 00000000" + "00".repeat(16)), bytes(info, 64));

        // as the kernel writes it back: id 3, flags 0x42, pid 99, owner 1000:1000, state LIVE
        info.putInt(12, 3).putLong(24, 0x42).putInt(16, 99).putShort(4, (short) 1).putInt(40, 1000).putInt(44, 1000);
        UblkStructs.DevInfo read = UblkStructs.DevInfo.read(info);
        assertEquals(new UblkStructs.DevInfo(2, 128, 1, 512 << 10, 3, 99, 0x42, 1000, 1000), read);
    }

    @Test
    void params()
    {
        ByteBuffer params = UblkStructs.allocate(UblkCmd.PARAMS_SIZE);
        params.put(0, hex("aa".repeat(UblkCmd.PARAMS_SIZE)));
        new UblkStructs.Params(UblkCmd.ATTR_VOLATILE_CACHE | UblkCmd.ATTR_FUA, 9, 12, 12, 9, 1024, 0x200000L,
                true, 4096, 0x7fffff, 0x7fffff).write(params);
        byte[] expected = new byte[UblkCmd.PARAMS_SIZE];
        byte[] head = hex(
                "98000000 03000000"                                              // len 152, types BASIC|DISCARD
                + "0c000000 09 0c 0c 09 00040000 00000000 0000200000000000 0000000000000000" // basic @8
                + "00000000 00100000 ffff7f00 ffff7f00 0100 0000");                           // discard @40
        System.arraycopy(head, 0, expected, 0, head.length);
        assertEquals(60, head.length);
        assertArrayEquals(expected, bytes(params, UblkCmd.PARAMS_SIZE));
    }

    @Test
    void paramsWithoutDiscard()
    {
        ByteBuffer params = UblkStructs.allocate(UblkCmd.PARAMS_SIZE);
        new UblkStructs.Params(UblkCmd.ATTR_READ_ONLY, 12, 12, 12, 12, 128, 2048, false, 0, 0, 0).write(params);
        assertEquals(UblkCmd.PARAM_TYPE_BASIC, params.getInt(4));
        assertEquals(UblkCmd.ATTR_READ_ONLY, params.getInt(8));
        assertEquals(12, params.get(12));
        assertEquals(2048, params.getLong(24));
        for (int i = 40; i < UblkCmd.PARAMS_SIZE; i++) {
            assertEquals(0, params.get(i), "byte " + i);
        }
    }

    @Test
    void ioDescriptor()
    {
        ByteBuffer descs = ByteBuffer.wrap(hex("00".repeat(24)
                + "01a00000 08000000 1000000000000000 0000000000000000")).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(UblkCmd.OP_WRITE | UblkCmd.IO_F_FUA | UblkCmd.IO_F_NOUNMAP, UblkStructs.descOpFlags(descs, 1));
        assertEquals(8, UblkStructs.descNrSectors(descs, 1));
        assertEquals(16, UblkStructs.descStartSector(descs, 1));
    }
}
