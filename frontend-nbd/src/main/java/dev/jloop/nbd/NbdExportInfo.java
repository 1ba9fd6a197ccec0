package dev.jloop.nbd;

import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.DeviceCapabilities.Support;
import dev.jloop.api.Export;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

import static dev.jloop.nbd.NbdProtocol.FLAG_CAN_MULTI_CONN;
import static dev.jloop.nbd.NbdProtocol.FLAG_HAS_FLAGS;
import static dev.jloop.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_DF;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.INFO_BLOCK_SIZE;
import static dev.jloop.nbd.NbdProtocol.INFO_DESCRIPTION;
import static dev.jloop.nbd.NbdProtocol.INFO_EXPORT;
import static dev.jloop.nbd.NbdProtocol.INFO_NAME;
import static dev.jloop.nbd.NbdProtocol.MAX_PAYLOAD_ADVERTISED;
import static dev.jloop.nbd.NbdProtocol.PREFERRED_BLOCK_SIZE;

/**
 * What the handshake tells a client about an export: its transmission flags, a translation of the
 * device's {@link DeviceCapabilities} (emulated or native alike, never hard-coded), and the answers
 * to NBD_OPT_EXPORT_NAME, NBD_OPT_LIST and the information requests of NBD_OPT_INFO and NBD_OPT_GO.
 */
final class NbdExportInfo
{
    private NbdExportInfo() {}

    /** The transmission flags of an export on a connection: DF only with structured replies. */
    static int transmissionFlags(Export export, boolean structuredReplies)
    {
        int flags = transmissionFlags(export.device().capabilities());
        if (structuredReplies) {
            flags |= FLAG_SEND_DF;
        }
        return flags;
    }

    /** The transmission flags of a device, whatever was negotiated. */
    static int transmissionFlags(DeviceCapabilities capabilities)
    {
        int flags = FLAG_HAS_FLAGS;
        if (capabilities.flush()) {
            flags |= FLAG_SEND_FLUSH;
        }
        if (capabilities.readOnly()) {
            flags |= FLAG_READ_ONLY;
        }
        if (capabilities.fua() != Support.NONE) {
            flags |= FLAG_SEND_FUA;
        }
        if (capabilities.trim()) {
            flags |= FLAG_SEND_TRIM;
        }
        if (capabilities.zero() != Support.NONE) {
            flags |= FLAG_SEND_WRITE_ZEROES;
        }
        if (capabilities.fastZero()) {
            flags |= FLAG_SEND_FAST_ZERO;
        }
        if (capabilities.multiConn()) {
            flags |= FLAG_CAN_MULTI_CONN;
        }
        if (capabilities.cache() != Support.NONE) {
            flags |= FLAG_SEND_CACHE;
        }
        return flags;
    }

    /**
     * Preferred block size: the device's logical block (4096 under {@code O_DIRECT}), at least 4 KiB.
     * The minimum is always 1: the device bounces unaligned requests itself, as qemu-nbd with
     * {@code --cache=none} does, and a larger minimum makes libnbd refuse smaller requests outright.
     */
    static int preferredBlockSize(DeviceCapabilities capabilities)
    {
        return Math.max(PREFERRED_BLOCK_SIZE, Math.min(capabilities.logicalBlockSize(), 2 << 20));
    }

    /** The answer to NBD_OPT_EXPORT_NAME: size and flags, then 124 zero bytes unless the client asked for none. */
    static ByteBuffer exportNameReply(Export export, int flags, boolean noZeroes)
    {
        ByteBuffer reply = ByteBuffer.allocate(noZeroes ? 10 : 10 + 124)
                .putLong(export.device().size())
                .putShort((short) flags);
        return reply.position(reply.capacity()).flip();
    }

    /** The NBD_REP_SERVER data of NBD_OPT_LIST: name and description. */
    static ByteBuffer server(Export export)
    {
        byte[] name = export.name().getBytes(StandardCharsets.UTF_8);
        byte[] description = export.description().getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(4 + name.length + description.length)
                .putInt(name.length).put(name).put(description)
                .flip();
    }

    /** NBD_INFO_EXPORT, which NBD_OPT_INFO and NBD_OPT_GO always answer first: size and flags. */
    static ByteBuffer exportInfo(Export export, int flags)
    {
        return ByteBuffer.allocate(12)
                .putShort((short) INFO_EXPORT)
                .putLong(export.device().size())
                .putShort((short) flags)
                .flip();
    }

    /**
     * The answer to an information request of NBD_OPT_INFO or NBD_OPT_GO (name, description, block
     * sizes); null for NBD_INFO_EXPORT, which is sent anyway, and for types the server does not know,
     * which the spec says to ignore.
     *
     * @param maxPayload bytes of the page pool requests take their pages from: the largest payload served
     */
    static ByteBuffer requestedInfo(int type, Export export, long maxPayload)
    {
        switch (type) {
            case INFO_NAME:
                return text(INFO_NAME, export.name());
            case INFO_DESCRIPTION:
                return text(INFO_DESCRIPTION, export.description());
            case INFO_BLOCK_SIZE: {
                int minimum = 1;
                int preferred = preferredBlockSize(export.device().capabilities());
                // A READ or WRITE larger than the page pool gets ENOMEM: never invite one. The
                // spec wants a multiple of the minimum, and at least the preferred size.
                int maximum = (int) Math.max(preferred, Math.min(MAX_PAYLOAD_ADVERTISED, maxPayload) / preferred * preferred);
                return ByteBuffer.allocate(14)
                        .putShort((short) INFO_BLOCK_SIZE)
                        .putInt(minimum)
                        .putInt(preferred)
                        .putInt(maximum)
                        .flip();
            }
            default:
                return null;
        }
    }

    private static ByteBuffer text(int type, String text)
    {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(2 + bytes.length).putShort((short) type).put(bytes).flip();
    }
}
