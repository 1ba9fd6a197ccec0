package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.nbd.channel.NbdChannel;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_CACHE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_DF;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_REQ_ONE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_CACHE;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FAST_ZERO;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.NBD_EINVAL;
import static dev.jloop.nbd.NbdProtocol.NBD_ENOSPC;
import static dev.jloop.nbd.NbdProtocol.NBD_EPERM;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REQUEST_SIZE;
import static java.util.Objects.requireNonNull;

/**
 * Reads and checks the requests of one connection: parses each header out of an input buffer that
 * holds what the client pipelined, decides whether the request may reach the device (flags the
 * command takes, transmission flags negotiated, range, read-only export), and reads WRITE payloads:
 * what is buffered is copied into the request's pages, the rest read from the socket straight into
 * them. The payload of a refused WRITE is read into the input buffer and dropped, never allocated.
 *
 * <p>Reader thread only. What may block on the socket ({@link #awaitRequest}, {@link #readPayload},
 * {@link #skip}) is apart from what works on the buffer alone, so that the reader can drop the
 * device's plug before it waits.
 */
final class NbdRequestReader
{
    /** Largest READ or WRITE served: twice the 32 MiB advertised, as nbdkit and qemu accept. */
    static final int MAX_REQUEST_LENGTH = 64 << 20;
    private static final int INPUT_BUFFER_SIZE = 64 << 10;

    private final NbdChannel channel;
    private final BlockDevice device;
    private final int transmissionFlags;
    private final boolean structuredReplies;
    private final boolean baseAllocation;
    private final ByteBuffer in = ByteBuffer.allocateDirect(INPUT_BUFFER_SIZE).flip();
    // The header parsed last.
    private int flags;
    private int type;
    private long cookie;
    private long offset;
    private long length;

    /**
     * @param transmissionFlags the flags advertised for the export, which say which commands and flags are allowed
     * @param baseAllocation whether {@code base:allocation} was selected for the export, which BLOCK_STATUS needs
     */
    NbdRequestReader(NbdChannel channel, BlockDevice device, int transmissionFlags, boolean structuredReplies, boolean baseAllocation)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.device = requireNonNull(device, "device is null");
        this.transmissionFlags = transmissionFlags;
        this.structuredReplies = structuredReplies;
        this.baseAllocation = baseAllocation && structuredReplies;
    }

    /**
     * The input buffer, in read mode (the bytes between position and limit are buffered), for a
     * connection loop that fills it itself instead of through {@link #awaitRequest} and {@link #skip}.
     */
    ByteBuffer input()
    {
        return in;
    }

    /** Whether a whole request header is buffered. */
    boolean hasRequest()
    {
        return in.remaining() >= REQUEST_SIZE;
    }

    /** Reads until a whole request header is buffered; false on a clean end of input between requests. */
    boolean awaitRequest()
            throws IOException
    {
        return fill(REQUEST_SIZE, true);
    }

    /**
     * Parses the request header at the front of the input buffer ({@link #hasRequest}) and returns its
     * command; {@link #describe} hands the rest to a request.
     *
     * @throws NbdProtocolException for a bad magic: the stream can no longer be parsed
     */
    int parseHeader()
            throws NbdProtocolException
    {
        return parseHeader(in);
    }

    /** As {@link #parseHeader()}, from the front of {@code in} (big-endian, at least a header remaining) instead of the input buffer. */
    int parseHeader(ByteBuffer in)
            throws NbdProtocolException
    {
        int magic = in.getInt();
        flags = Short.toUnsignedInt(in.getShort());
        type = Short.toUnsignedInt(in.getShort());
        cookie = in.getLong();
        offset = in.getLong();
        length = Integer.toUnsignedLong(in.getInt());
        if (magic != REQUEST_MAGIC) {
            throw new NbdProtocolException(String.format("bad request magic 0x%08x", magic));
        }
        return type;
    }

    /** Gives {@code request} the header parsed last. */
    void describe(NbdRequest request)
    {
        request.reset(cookie, type, flags, offset, length);
        request.structured = structuredReplies && (type == CMD_READ || type == CMD_BLOCK_STATUS);
    }

    /** 0, or the NBD error for a request that must not reach the device. */
    int validate(NbdRequest request)
    {
        int type = request.type;
        int flags = request.flags;
        int allowedFlags;
        int neededTransmissionFlag;
        switch (type) {
            case CMD_READ:
                allowedFlags = structuredReplies ? CMD_FLAG_DF : 0;
                neededTransmissionFlag = 0;
                break;
            case CMD_WRITE:
                allowedFlags = CMD_FLAG_FUA;
                neededTransmissionFlag = 0;
                break;
            case CMD_FLUSH:
                allowedFlags = 0;
                neededTransmissionFlag = FLAG_SEND_FLUSH;
                break;
            case CMD_TRIM:
                allowedFlags = CMD_FLAG_FUA;
                neededTransmissionFlag = FLAG_SEND_TRIM;
                break;
            case CMD_WRITE_ZEROES:
                allowedFlags = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE
                        | ((transmissionFlags & FLAG_SEND_FAST_ZERO) != 0 ? CMD_FLAG_FAST_ZERO : 0);
                neededTransmissionFlag = FLAG_SEND_WRITE_ZEROES;
                break;
            case CMD_CACHE:
                allowedFlags = 0;
                neededTransmissionFlag = FLAG_SEND_CACHE;
                break;
            case CMD_BLOCK_STATUS:
                if (!baseAllocation) {
                    // The spec: BLOCK_STATUS without a selected metadata context SHOULD get EINVAL.
                    return NBD_EINVAL;
                }
                allowedFlags = CMD_FLAG_REQ_ONE;
                neededTransmissionFlag = 0;
                break;
            default:
                // RESIZE and the rest are not advertised: the spec's answer is EINVAL.
                return NBD_EINVAL;
        }
        // The spec: once FUA is negotiated the server MUST accept it on every command, if only by ignoring
        // it (older qemu sets it on FLUSH). It means something to WRITE, WRITE_ZEROES and TRIM only.
        if ((transmissionFlags & FLAG_SEND_FUA) != 0) {
            allowedFlags |= CMD_FLAG_FUA;
        }
        if ((flags & ~allowedFlags) != 0) {
            return NBD_EINVAL;
        }
        boolean writes = type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES;
        if (writes && (transmissionFlags & FLAG_READ_ONLY) != 0) {
            return NBD_EPERM;
        }
        if ((transmissionFlags & neededTransmissionFlag) != neededTransmissionFlag) {
            return NBD_EINVAL;
        }
        if ((flags & CMD_FLAG_FUA) != 0 && (transmissionFlags & FLAG_SEND_FUA) == 0) {
            return NBD_EINVAL;
        }
        if (type == CMD_FLUSH) {
            return 0;
        }
        long offset = request.offset;
        long length = request.length;
        if ((type == CMD_READ || type == CMD_WRITE) && length > MAX_REQUEST_LENGTH) {
            return NBD_EINVAL;
        }
        if (type == CMD_BLOCK_STATUS && length == 0) {
            return NBD_EINVAL;
        }
        // offset is unsigned on the wire: negative here means past 2^63, beyond any device
        long size = device.size();
        if (offset < 0) {
            return NBD_EINVAL;
        }
        if (offset > size || length > size - offset) {
            // The spec: a write that reaches past the end SHOULD get ENOSPC; other commands EINVAL.
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
        }
        return 0;
    }

    /**
     * Copies the buffered part of a WRITE payload into the request's pages; true when that was all of
     * it, else {@link #readPayload} reads the rest.
     */
    boolean takeBufferedPayload(NbdRequest request)
    {
        request.preparePageBuffers();
        for (int i = 0; i < request.nrPages; i++) {
            ByteBuffer page = request.pages[i].buffer();
            int n = Math.min(page.remaining(), in.remaining());
            if (n > 0) {
                int limit = in.limit();
                in.limit(in.position() + n);
                page.put(in);
                in.limit(limit);
            }
        }
        return !request.pages[request.nrPages - 1].buffer().hasRemaining();
    }

    /** Reads the rest of a WRITE payload from the socket, straight into the request's pages; blocks. */
    void readPayload(NbdRequest request)
            throws IOException
    {
        ByteBuffer[] gather = request.gather;
        int count = request.nrPages;
        for (int i = 0; i < count; i++) {
            gather[i] = request.pages[i].buffer();
        }
        try {
            int first = 0;
            while (first < count) {
                while (first < count && !gather[first].hasRemaining()) {
                    first++;
                }
                if (first < count && channel.read(gather, first, count - first) < 0) {
                    throw new EOFException("client closed the connection in the middle of a WRITE payload");
                }
            }
        }
        finally {
            for (int i = 0; i < count; i++) {
                gather[i] = null;
            }
        }
    }

    /** Drops what is buffered of {@code length} bytes of payload; returns how many are left to {@link #skip}. */
    long skipBuffered(long length)
    {
        int n = (int) Math.min(in.remaining(), length);
        in.position(in.position() + n);
        return length - n;
    }

    /** Reads and drops {@code length} bytes of payload, through the input buffer; blocks. */
    void skip(long length)
            throws IOException
    {
        while (length > 0) {
            if (!in.hasRemaining()) {
                fill(1, false);
            }
            length = skipBuffered(length);
        }
    }

    /**
     * Makes at least {@code bytes} readable in the input buffer. Returns false on a clean end of input
     * (nothing buffered and {@code atBoundary}); throws on end of input in the middle of a message.
     */
    private boolean fill(int bytes, boolean atBoundary)
            throws IOException
    {
        if (in.remaining() >= bytes) {
            return true;
        }
        in.compact();
        try {
            while (in.position() < bytes) {
                if (channel.read(in) < 0) {
                    if (atBoundary && in.position() == 0) {
                        return false;
                    }
                    throw new EOFException("client closed the connection in the middle of a request");
                }
            }
        }
        finally {
            in.flip();
        }
        return true;
    }
}
