package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.DeviceCapabilities.Support;
import dev.jloop.api.Export;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION_ID;
import static dev.jloop.nbd.NbdProtocol.FLAG_CAN_MULTI_CONN;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_HAS_FLAGS;
import static dev.jloop.nbd.NbdProtocol.FLAG_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_DF;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.IHAVEOPT;
import static dev.jloop.nbd.NbdProtocol.INFO_BLOCK_SIZE;
import static dev.jloop.nbd.NbdProtocol.INFO_DESCRIPTION;
import static dev.jloop.nbd.NbdProtocol.INFO_EXPORT;
import static dev.jloop.nbd.NbdProtocol.INFO_NAME;
import static dev.jloop.nbd.NbdProtocol.MAX_PAYLOAD_ADVERTISED;
import static dev.jloop.nbd.NbdProtocol.NBDMAGIC;
import static dev.jloop.nbd.NbdProtocol.OPT_ABORT;
import static dev.jloop.nbd.NbdProtocol.OPT_EXPORT_NAME;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.OPT_INFO;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_SET_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.OPT_STARTTLS;
import static dev.jloop.nbd.NbdProtocol.OPT_STRUCTURED_REPLY;
import static dev.jloop.nbd.NbdProtocol.PREFERRED_BLOCK_SIZE;
import static dev.jloop.nbd.NbdProtocol.REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_INVALID;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_TLS_REQD;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_TOO_BIG;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNKNOWN;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNSUP;
import static dev.jloop.nbd.NbdProtocol.REP_INFO;
import static dev.jloop.nbd.NbdProtocol.REP_META_CONTEXT;
import static dev.jloop.nbd.NbdProtocol.REP_SERVER;
import static java.util.Objects.requireNonNull;

/**
 * The fixed newstyle handshake and option haggling of one connection, up to the start of the
 * transmission phase. Options that change later phases (STRUCTURED_REPLY, SET_META_CONTEXT) record
 * what was negotiated here; {@link #structuredReplies()} and {@link #baseAllocation(Export)} hand it
 * on to the transmission phase.
 *
 * <p>Metadata contexts: only {@code base:allocation} exists. LIST_META_CONTEXT lists it for an
 * empty query list, for the query {@code base:} (its namespace) and for the name itself; unknown
 * namespaces and names are ignored, as the spec asks. SET_META_CONTEXT selects it for one export;
 * BLOCK_STATUS is then allowed only if the client goes on to that same export.
 *
 * <p>STARTTLS (with {@link NbdTls} on or require) swaps {@link #channel()} for a TLS channel
 * after its ACK and forgets what was negotiated before; under require every other option but
 * ABORT is refused with NBD_REP_ERR_TLS_REQD until then.
 *
 * <p>Runs on the connection's reader thread with blocking, exact-length reads, so nothing the client
 * sends after the handshake is consumed here. Heap buffers are fine: this runs once per connection.
 */
final class NbdHandshake
{
    private static final Logger log = LoggerFactory.getLogger(NbdHandshake.class);

    /** Option data above this is discarded unread and refused with NBD_REP_ERR_TOO_BIG. */
    static final int MAX_OPTION_LENGTH = 64 << 10;
    /** Option data above this is not even read past: the client is hostile or broken, and is dropped. */
    static final int MAX_OPTION_SKIP = 16 << 20;

    private NbdChannel channel;
    private final NbdTls tls;
    private boolean tlsStarted;
    private final NbdExports exports;
    private final String peer;
    private final long pagePoolCapacity;
    private final ByteBuffer header = ByteBuffer.allocate(20);
    private boolean fixedNewstyle;
    private boolean noZeroes;
    private boolean structuredReplies;
    /** The export SET_META_CONTEXT selected {@code base:allocation} for, or null. */
    private Export metaContextExport;

    /** @param pagePoolCapacity bytes of the page pool requests take their pages from: the largest payload served */
    NbdHandshake(NbdChannel channel, NbdExports exports, String peer, NbdTls tls, long pagePoolCapacity)
    {
        this.pagePoolCapacity = pagePoolCapacity;
        this.channel = requireNonNull(channel, "channel is null");
        this.tls = requireNonNull(tls, "tls is null");
        this.exports = requireNonNull(exports, "exports is null");
        this.peer = requireNonNull(peer, "peer is null");
    }

    /**
     * Runs the handshake. Returns the export chosen with NBD_OPT_GO or NBD_OPT_EXPORT_NAME, or
     * {@code null} when the client aborted.
     *
     * @throws NbdProtocolException when the client broke the protocol; the connection must be closed
     * @throws EOFException when the client went away
     */
    Export negotiate()
            throws IOException
    {
        ByteBuffer greeting = ByteBuffer.allocate(18)
                .putLong(NBDMAGIC)
                .putLong(IHAVEOPT)
                .putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
        writeFully(greeting.flip());

        int clientFlags = readFully(4).getInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new NbdProtocolException(String.format("unknown client flags 0x%x", clientFlags));
        }
        fixedNewstyle = (clientFlags & FLAG_C_FIXED_NEWSTYLE) != 0;
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;

        while (true) {
            ByteBuffer option = readFully(16);
            long magic = option.getLong();
            int opt = option.getInt();
            long length = Integer.toUnsignedLong(option.getInt());
            if (magic != IHAVEOPT) {
                throw new NbdProtocolException(String.format("bad option magic 0x%x", magic));
            }
            if (!fixedNewstyle && opt != OPT_EXPORT_NAME) {
                // A client without FIXED_NEWSTYLE cannot parse option replies: all we can do is hang up.
                throw new NbdProtocolException("option " + opt + " from a client without fixed newstyle");
            }
            if (length > MAX_OPTION_LENGTH) {
                if (opt == OPT_EXPORT_NAME) {
                    throw new NbdProtocolException("export name of " + length + " bytes");
                }
                if (length > MAX_OPTION_SKIP) {
                    throw new NbdProtocolException("option " + opt + " with " + length + " bytes of data");
                }
                skip(length);
                replyError(opt, REP_ERR_TOO_BIG, "option data of " + length + " bytes is too long");
                continue;
            }
            ByteBuffer data = readFully((int) length);
            if (tls.mode() == NbdTls.Mode.REQUIRE && !tlsStarted && opt != OPT_STARTTLS && opt != OPT_ABORT) {
                if (opt == OPT_EXPORT_NAME) {
                    throw new NbdProtocolException("NBD_OPT_EXPORT_NAME without TLS, which this server requires");
                }
                replyError(opt, REP_ERR_TLS_REQD, "this server requires TLS: start it with NBD_OPT_STARTTLS");
                continue;
            }
            switch (opt) {
                case OPT_EXPORT_NAME: {
                    Export export = exports.lookup(decodeName(data));
                    if (export == null) {
                        // NBD_OPT_EXPORT_NAME has no error reply: the spec says to close.
                        throw new NbdProtocolException("unknown export requested with NBD_OPT_EXPORT_NAME");
                    }
                    ByteBuffer reply = ByteBuffer.allocate(noZeroes ? 10 : 10 + 124)
                            .putLong(export.device().size())
                            .putShort((short) transmissionFlags(export));
                    writeFully(reply.position(reply.capacity()).flip());
                    return export;
                }
                case OPT_ABORT:
                    try {
                        reply(opt, REP_ACK, ByteBuffer.allocate(0));
                    }
                    catch (IOException e) {
                        // the client may already have closed; it asked to end anyway
                    }
                    return null;
                case OPT_LIST:
                    if (length != 0) {
                        replyError(opt, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                        break;
                    }
                    for (Export export : exports.list()) {
                        byte[] name = export.name().getBytes(StandardCharsets.UTF_8);
                        byte[] description = export.description().getBytes(StandardCharsets.UTF_8);
                        ByteBuffer server = ByteBuffer.allocate(4 + name.length + description.length)
                                .putInt(name.length).put(name).put(description);
                        reply(opt, REP_SERVER, server.flip());
                    }
                    reply(opt, REP_ACK, ByteBuffer.allocate(0));
                    break;
                case OPT_INFO:
                case OPT_GO: {
                    Export export = infoOrGo(opt, data);
                    if (export != null && opt == OPT_GO) {
                        return export;
                    }
                    break;
                }
                case OPT_STARTTLS:
                    if (tls.mode() == NbdTls.Mode.OFF) {
                        replyError(opt, REP_ERR_UNSUP, "TLS is not enabled on this server");
                    }
                    else if (tlsStarted) {
                        replyError(opt, REP_ERR_INVALID, "TLS is already started");
                    }
                    else if (length != 0) {
                        replyError(opt, REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
                    }
                    else {
                        reply(opt, REP_ACK, ByteBuffer.allocate(0));
                        channel = tls.startTls(channel);
                        tlsStarted = true;
                        // the spec: what was negotiated before TLS does not carry over
                        structuredReplies = false;
                        metaContextExport = null;
                        log.debug("{}: TLS started", peer);
                    }
                    break;
                case OPT_STRUCTURED_REPLY:
                    if (length != 0) {
                        replyError(opt, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
                        break;
                    }
                    structuredReplies = true;
                    reply(opt, REP_ACK, ByteBuffer.allocate(0));
                    break;
                case OPT_LIST_META_CONTEXT:
                case OPT_SET_META_CONTEXT:
                    metaContext(opt, data);
                    break;
                default:
                    replyError(opt, REP_ERR_UNSUP, "option " + opt + " is not supported");
                    break;
            }
        }
    }

    /** The connection's channel: the one given, or the TLS channel after NBD_OPT_STARTTLS. */
    NbdChannel channel()
    {
        return channel;
    }

    /** Whether NBD_OPT_STRUCTURED_REPLY was negotiated. */
    boolean structuredReplies()
    {
        return structuredReplies;
    }

    /** Whether {@code base:allocation} was selected for {@code export}, the one the client went on to. */
    boolean baseAllocation(Export export)
    {
        return structuredReplies && metaContextExport != null && metaContextExport == export;
    }

    /** The transmission flags of an export on this connection (DF only with structured replies). */
    int transmissionFlags(Export export)
    {
        int flags = transmissionFlags(export.device().capabilities());
        if (structuredReplies) {
            flags |= FLAG_SEND_DF;
        }
        return flags;
    }

    /** Whether the client asked for no 124 zero bytes after NBD_OPT_EXPORT_NAME. */
    boolean noZeroes()
    {
        return noZeroes;
    }

    /**
     * The transmission flags of a device, whatever was negotiated: a translation of what the device
     * offers, emulated or native alike.
     */
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

    private Export infoOrGo(int opt, ByteBuffer data)
            throws IOException
    {
        // u32 name length, name, u16 number of info requests, u16 each
        if (data.remaining() < 6) {
            replyError(opt, REP_ERR_INVALID, "option data too short");
            return null;
        }
        long nameLength = Integer.toUnsignedLong(data.getInt());
        if (nameLength > data.remaining() - 2) {
            replyError(opt, REP_ERR_INVALID, "export name length past the option data");
            return null;
        }
        ByteBuffer nameBytes = data.slice(data.position(), (int) nameLength);
        data.position(data.position() + (int) nameLength);
        int requests = Short.toUnsignedInt(data.getShort());
        if (data.remaining() != 2 * requests) {
            replyError(opt, REP_ERR_INVALID, "number of information requests does not match the option length");
            return null;
        }
        String name;
        try {
            name = decodeName(nameBytes);
        }
        catch (NbdProtocolException e) {
            replyError(opt, REP_ERR_INVALID, e.getMessage());
            return null;
        }
        Export export = exports.lookup(name);
        if (export == null) {
            replyError(opt, REP_ERR_UNKNOWN, "unknown export");
            return null;
        }

        BlockDevice device = export.device();
        DeviceCapabilities capabilities = device.capabilities();
        ByteBuffer exportInfo = ByteBuffer.allocate(12)
                .putShort((short) INFO_EXPORT)
                .putLong(device.size())
                .putShort((short) transmissionFlags(export));
        reply(opt, REP_INFO, exportInfo.flip());
        for (int i = 0; i < requests; i++) {
            int type = Short.toUnsignedInt(data.getShort());
            switch (type) {
                case INFO_NAME:
                    reply(opt, REP_INFO, info(INFO_NAME, export.name()));
                    break;
                case INFO_DESCRIPTION:
                    reply(opt, REP_INFO, info(INFO_DESCRIPTION, export.description()));
                    break;
                case INFO_BLOCK_SIZE: {
                    int minimum = 1;
                    int preferred = preferredBlockSize(capabilities);
                    // A READ or WRITE larger than the page pool gets ENOMEM: never invite one. The
                    // spec wants a multiple of the minimum, and at least the preferred size.
                    int maximum = (int) Math.max(preferred, Math.min(MAX_PAYLOAD_ADVERTISED, pagePoolCapacity) / preferred * preferred);
                    ByteBuffer blockSize = ByteBuffer.allocate(14)
                            .putShort((short) INFO_BLOCK_SIZE)
                            .putInt(minimum)
                            .putInt(preferred)
                            .putInt(maximum);
                    reply(opt, REP_INFO, blockSize.flip());
                    break;
                }
                default:
                    // The spec: a server ignores information requests it does not understand.
                    break;
            }
        }
        reply(opt, REP_ACK, ByteBuffer.allocate(0));
        return export;
    }

    /**
     * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: u32 export name length, name, u32
     * number of queries, then each query as u32 length and string.
     */
    private void metaContext(int opt, ByteBuffer data)
            throws IOException
    {
        if (!structuredReplies) {
            replyError(opt, REP_ERR_INVALID, "metadata contexts need NBD_OPT_STRUCTURED_REPLY first");
            return;
        }
        if (data.remaining() < 8) {
            replyError(opt, REP_ERR_INVALID, "option data too short");
            return;
        }
        long nameLength = Integer.toUnsignedLong(data.getInt());
        if (nameLength > data.remaining() - 4) {
            replyError(opt, REP_ERR_INVALID, "export name length past the option data");
            return;
        }
        ByteBuffer nameBytes = data.slice(data.position(), (int) nameLength);
        data.position(data.position() + (int) nameLength);
        long queries = Integer.toUnsignedLong(data.getInt());
        boolean selected = opt == OPT_LIST_META_CONTEXT && queries == 0;
        for (long i = 0; i < queries; i++) {
            if (data.remaining() < 4) {
                replyError(opt, REP_ERR_INVALID, "fewer queries than announced");
                return;
            }
            long queryLength = Integer.toUnsignedLong(data.getInt());
            if (queryLength > data.remaining()) {
                replyError(opt, REP_ERR_INVALID, "query length past the option data");
                return;
            }
            ByteBuffer queryBytes = data.slice(data.position(), (int) queryLength);
            data.position(data.position() + (int) queryLength);
            String query;
            try {
                query = decodeName(queryBytes);
            }
            catch (NbdProtocolException e) {
                replyError(opt, REP_ERR_INVALID, "query is not UTF-8");
                return;
            }
            if (query.equals(BASE_ALLOCATION) || (opt == OPT_LIST_META_CONTEXT && query.equals("base:"))) {
                selected = true;
            }
        }
        if (data.hasRemaining()) {
            replyError(opt, REP_ERR_INVALID, "option data after the last query");
            return;
        }
        String name;
        try {
            name = decodeName(nameBytes);
        }
        catch (NbdProtocolException e) {
            replyError(opt, REP_ERR_INVALID, e.getMessage());
            return;
        }
        Export export = exports.lookup(name);
        if (export == null) {
            replyError(opt, REP_ERR_UNKNOWN, "unknown export");
            return;
        }
        if (opt == OPT_SET_META_CONTEXT) {
            metaContextExport = selected ? export : null;
        }
        if (selected) {
            byte[] context = BASE_ALLOCATION.getBytes(StandardCharsets.UTF_8);
            // The spec: ids in LIST replies are reserved and SHOULD be 0.
            int id = opt == OPT_SET_META_CONTEXT ? BASE_ALLOCATION_ID : 0;
            reply(opt, REP_META_CONTEXT, ByteBuffer.allocate(4 + context.length).putInt(id).put(context).flip());
        }
        reply(opt, REP_ACK, ByteBuffer.allocate(0));
    }

    private static ByteBuffer info(int type, String text)
    {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(2 + bytes.length).putShort((short) type).put(bytes).flip();
    }

    private static String decodeName(ByteBuffer bytes)
            throws NbdProtocolException
    {
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(bytes);
            return chars.toString();
        }
        catch (CharacterCodingException e) {
            throw new NbdProtocolException("export name is not UTF-8");
        }
    }

    private void replyError(int opt, int type, String message)
            throws IOException
    {
        log.debug("{}: option {} refused ({}): {}", peer, opt, type & ~NbdProtocol.REP_FLAG_ERROR, message);
        reply(opt, type, ByteBuffer.wrap(message.getBytes(StandardCharsets.UTF_8)));
    }

    private void reply(int opt, int type, ByteBuffer data)
            throws IOException
    {
        header.clear()
                .putLong(REPLY_MAGIC)
                .putInt(opt)
                .putInt(type)
                .putInt(data.remaining())
                .flip();
        // Small enough to join into one write, so a reply is one segment on the wire.
        ByteBuffer[] buffers = {header, data};
        while (header.hasRemaining() || data.hasRemaining()) {
            channel.write(buffers);
        }
    }

    private ByteBuffer readFully(int length)
            throws IOException
    {
        ByteBuffer buffer = ByteBuffer.allocate(length);
        while (buffer.hasRemaining()) {
            if (channel.read(buffer) < 0) {
                throw new EOFException("client closed the connection during the handshake");
            }
        }
        return buffer.flip();
    }

    private void skip(long length)
            throws IOException
    {
        ByteBuffer scratch = ByteBuffer.allocate(8192);
        while (length > 0) {
            scratch.clear().limit((int) Math.min(scratch.capacity(), length));
            int n = channel.read(scratch);
            if (n < 0) {
                throw new EOFException("client closed the connection during the handshake");
            }
            length -= n;
        }
    }

    private void writeFully(ByteBuffer buffer)
            throws IOException
    {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }
}
