package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.nbd.NbdOptionData.InfoRequest;
import dev.jloop.nbd.NbdOptionData.InvalidOptionException;
import dev.jloop.nbd.NbdOptionData.MetaContextRequest;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION;
import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION_ID;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.IHAVEOPT;
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
 * <p>Runs on the connection's reader thread, reading and writing through an {@link NbdOptionChannel}
 * (exact-length reads, so nothing the client sends after the handshake is consumed here). Option data
 * is parsed by {@link NbdOptionData}; what a client learns about an export comes from
 * {@link NbdExportInfo}.
 */
final class NbdHandshake
{
    private static final Logger log = LoggerFactory.getLogger(NbdHandshake.class);

    /** Option data above this is discarded unread and refused with NBD_REP_ERR_TOO_BIG. */
    static final int MAX_OPTION_LENGTH = 64 << 10;
    /** Option data above this is not even read past: the client is hostile or broken, and is dropped. */
    static final int MAX_OPTION_SKIP = 16 << 20;

    private final NbdOptionChannel options;
    private final NbdTls tls;
    private boolean tlsStarted;
    private final NbdExports exports;
    private final String peer;
    private final long pagePoolCapacity;
    private boolean fixedNewstyle;
    private boolean noZeroes;
    private boolean structuredReplies;
    /** The export SET_META_CONTEXT selected {@code base:allocation} for, or null. */
    private Export metaContextExport;

    /** @param pagePoolCapacity bytes of the page pool requests take their pages from: the largest payload served */
    NbdHandshake(NbdChannel channel, NbdExports exports, String peer, NbdTls tls, long pagePoolCapacity)
    {
        this.pagePoolCapacity = pagePoolCapacity;
        this.options = new NbdOptionChannel(channel);
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
        options.write(greeting.flip());

        int clientFlags = options.read(4).getInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new NbdProtocolException(String.format("unknown client flags 0x%x", clientFlags));
        }
        fixedNewstyle = (clientFlags & FLAG_C_FIXED_NEWSTYLE) != 0;
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;

        while (true) {
            ByteBuffer option = options.read(16);
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
                options.skip(length);
                replyError(opt, REP_ERR_TOO_BIG, "option data of " + length + " bytes is too long");
                continue;
            }
            ByteBuffer data = options.read((int) length);
            if (tls.mode() == NbdTls.Mode.REQUIRE && !tlsStarted && opt != OPT_STARTTLS && opt != OPT_ABORT) {
                if (opt == OPT_EXPORT_NAME) {
                    throw new NbdProtocolException("NBD_OPT_EXPORT_NAME without TLS, which this server requires");
                }
                replyError(opt, REP_ERR_TLS_REQD, "this server requires TLS: start it with NBD_OPT_STARTTLS");
                continue;
            }
            switch (opt) {
                case OPT_EXPORT_NAME: {
                    Export export;
                    try {
                        export = exports.lookup(NbdOptionData.exportName(data));
                    }
                    catch (InvalidOptionException e) {
                        throw new NbdProtocolException(e.getMessage());
                    }
                    if (export == null) {
                        // NBD_OPT_EXPORT_NAME has no error reply: the spec says to close.
                        throw new NbdProtocolException("unknown export requested with NBD_OPT_EXPORT_NAME");
                    }
                    options.write(NbdExportInfo.exportNameReply(export, transmissionFlags(export), noZeroes));
                    return export;
                }
                case OPT_ABORT:
                    try {
                        options.ack(opt);
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
                        options.reply(opt, REP_SERVER, NbdExportInfo.server(export));
                    }
                    options.ack(opt);
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
                        options.ack(opt);
                        options.startTls(tls, peer);
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
                    options.ack(opt);
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
        return options.channel();
    }

    /** Whether the connection went over to TLS (NBD_OPT_STARTTLS). */
    boolean tlsStarted()
    {
        return tlsStarted;
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
        return NbdExportInfo.transmissionFlags(export, structuredReplies);
    }

    /** Whether the client asked for no 124 zero bytes after NBD_OPT_EXPORT_NAME. */
    boolean noZeroes()
    {
        return noZeroes;
    }

    private Export infoOrGo(int opt, ByteBuffer data)
            throws IOException
    {
        InfoRequest request;
        try {
            request = NbdOptionData.infoRequest(data);
        }
        catch (InvalidOptionException e) {
            replyError(opt, REP_ERR_INVALID, e.getMessage());
            return null;
        }
        Export export = exports.lookup(request.name());
        if (export == null) {
            replyError(opt, REP_ERR_UNKNOWN, "unknown export");
            return null;
        }
        options.reply(opt, REP_INFO, NbdExportInfo.exportInfo(export, transmissionFlags(export)));
        for (int type : request.types()) {
            ByteBuffer info = NbdExportInfo.requestedInfo(type, export, pagePoolCapacity);
            // The spec: a server ignores information requests it does not understand.
            if (info != null) {
                options.reply(opt, REP_INFO, info);
            }
        }
        options.ack(opt);
        return export;
    }

    /** NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT, for the one context there is. */
    private void metaContext(int opt, ByteBuffer data)
            throws IOException
    {
        if (!structuredReplies) {
            replyError(opt, REP_ERR_INVALID, "metadata contexts need NBD_OPT_STRUCTURED_REPLY first");
            return;
        }
        MetaContextRequest request;
        try {
            request = NbdOptionData.metaContextRequest(data);
        }
        catch (InvalidOptionException e) {
            replyError(opt, REP_ERR_INVALID, e.getMessage());
            return;
        }
        boolean selected = opt == OPT_LIST_META_CONTEXT && request.queries().isEmpty();
        for (String query : request.queries()) {
            if (query.equals(BASE_ALLOCATION) || (opt == OPT_LIST_META_CONTEXT && query.equals("base:"))) {
                selected = true;
            }
        }
        Export export = exports.lookup(request.name());
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
            options.reply(opt, REP_META_CONTEXT, ByteBuffer.allocate(4 + context.length).putInt(id).put(context).flip());
        }
        options.ack(opt);
    }

    private void replyError(int opt, int type, String message)
            throws IOException
    {
        log.debug("{}: option {} refused ({}): {}", peer, opt, type & ~NbdProtocol.REP_FLAG_ERROR, message);
        options.reply(opt, type, ByteBuffer.wrap(message.getBytes(StandardCharsets.UTF_8)));
    }
}
