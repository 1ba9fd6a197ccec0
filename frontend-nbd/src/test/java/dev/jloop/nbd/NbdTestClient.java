package dev.jloop.nbd;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;

import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.IHAVEOPT;
import static dev.jloop.nbd.NbdProtocol.NBDMAGIC;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.REPLY_MAGIC;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_INFO;
import static dev.jloop.nbd.NbdProtocol.REQUEST_MAGIC;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;

/** A raw NBD client for tests: every field on the wire is written and checked by hand. */
final class NbdTestClient
        implements AutoCloseable
{
    record OptionReply(int option, int type, byte[] data)
    {
        ByteBuffer buffer()
        {
            return ByteBuffer.wrap(data);
        }
    }

    record Reply(int error, long cookie) {}

    /** One structured reply chunk, its payload whole. */
    record Chunk(int flags, int type, long cookie, byte[] data)
    {
        ByteBuffer buffer()
        {
            return ByteBuffer.wrap(data);
        }

        boolean done()
        {
            return (flags & NbdProtocol.REPLY_FLAG_DONE) != 0;
        }
    }

    private final SocketChannel channel;
    private final DataInputStream in;
    private final DataOutputStream out;
    long exportSize;
    int transmissionFlags;
    final java.util.Map<String, Integer> metaContexts = new java.util.HashMap<>();

    NbdTestClient(SocketAddress address)
            throws IOException
    {
        this(address, 0);
    }

    /** {@code receiveBufferBytes}: the socket's SO_RCVBUF, set before connecting; 0 for the system's (autotuned). */
    NbdTestClient(SocketAddress address, int receiveBufferBytes)
            throws IOException
    {
        this.channel = SocketChannel.open();
        if (receiveBufferBytes > 0) {
            channel.setOption(StandardSocketOptions.SO_RCVBUF, receiveBufferBytes);
        }
        channel.connect(address);
        if (address instanceof InetSocketAddress) {
            // As the server: a request sent in two writes (an option header, then its data) must not wait
            // for the peer's delayed ACK (40 ms and more once the connection is interactive).
            channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
        }
        this.in = new DataInputStream(new BufferedInputStream(Channels.newInputStream(channel)));
        this.out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 16));
    }

    /** Connects and goes through the handshake to the transmission phase of {@code export} with NBD_OPT_GO. */
    static NbdTestClient open(SocketAddress address, String export)
            throws IOException
    {
        return open(address, export, 0);
    }

    /** As {@link #open(SocketAddress, String)}, with the socket's receive buffer fixed at {@code receiveBufferBytes} (0: the system's). */
    static NbdTestClient open(SocketAddress address, String export, int receiveBufferBytes)
            throws IOException
    {
        NbdTestClient client = new NbdTestClient(address, receiveBufferBytes);
        client.readGreeting();
        client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        client.sendOption(OPT_GO, infoRequest(export));
        while (true) {
            OptionReply reply = client.readOptionReply();
            if (reply.type() == REP_ACK) {
                return client;
            }
            if (reply.type() != REP_INFO) {
                client.close();
                throw new IOException("NBD_OPT_GO failed with reply type " + Integer.toHexString(reply.type()));
            }
            ByteBuffer data = reply.buffer();
            if (data.getShort() == NbdProtocol.INFO_EXPORT) {
                client.exportSize = data.getLong();
                client.transmissionFlags = Short.toUnsignedInt(data.getShort());
            }
        }
    }

    /**
     * Connects with structured replies and, when {@code contexts} are given, SET_META_CONTEXT for
     * them, then NBD_OPT_GO. {@link #metaContexts} holds what the server selected.
     */
    static NbdTestClient openStructured(SocketAddress address, String export, String... contexts)
            throws IOException
    {
        NbdTestClient client = new NbdTestClient(address);
        client.readGreeting();
        client.sendClientFlags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        client.sendOption(NbdProtocol.OPT_STRUCTURED_REPLY, new byte[0]);
        OptionReply structured = client.readOptionReply();
        if (structured.type() != REP_ACK) {
            client.close();
            throw new IOException("NBD_OPT_STRUCTURED_REPLY refused: " + Integer.toHexString(structured.type()));
        }
        if (contexts.length > 0) {
            client.sendOption(NbdProtocol.OPT_SET_META_CONTEXT, metaContextRequest(export, contexts));
            OptionReply reply;
            while ((reply = client.readOptionReply()).type() == NbdProtocol.REP_META_CONTEXT) {
                ByteBuffer data = reply.buffer();
                int id = data.getInt();
                client.metaContexts.put(StandardCharsets.UTF_8.decode(data).toString(), id);
            }
            if (reply.type() != REP_ACK) {
                client.close();
                throw new IOException("NBD_OPT_SET_META_CONTEXT failed: " + Integer.toHexString(reply.type()));
            }
        }
        client.sendOption(OPT_GO, infoRequest(export));
        while (true) {
            OptionReply reply = client.readOptionReply();
            if (reply.type() == REP_ACK) {
                return client;
            }
            if (reply.type() != REP_INFO) {
                client.close();
                throw new IOException("NBD_OPT_GO failed with reply type " + Integer.toHexString(reply.type()));
            }
            ByteBuffer data = reply.buffer();
            if (data.getShort() == NbdProtocol.INFO_EXPORT) {
                client.exportSize = data.getLong();
                client.transmissionFlags = Short.toUnsignedInt(data.getShort());
            }
        }
    }

    static byte[] metaContextRequest(String export, String... queries)
    {
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        int length = 4 + name.length + 4;
        for (String query : queries) {
            length += 4 + query.getBytes(StandardCharsets.UTF_8).length;
        }
        ByteBuffer data = ByteBuffer.allocate(length).putInt(name.length).put(name).putInt(queries.length);
        for (String query : queries) {
            byte[] bytes = query.getBytes(StandardCharsets.UTF_8);
            data.putInt(bytes.length).put(bytes);
        }
        return data.array();
    }

    Chunk readChunk()
            throws IOException
    {
        int magic = in.readInt();
        if (magic != NbdProtocol.STRUCTURED_REPLY_MAGIC) {
            throw new IOException("bad structured reply magic " + Integer.toHexString(magic));
        }
        int flags = in.readUnsignedShort();
        int type = in.readUnsignedShort();
        long cookie = in.readLong();
        int length = in.readInt();
        byte[] data = new byte[length];
        in.readFully(data);
        return new Chunk(flags, type, cookie, data);
    }

    /** The chunks of one reply, up to and including the one flagged DONE. */
    java.util.List<Chunk> readChunks()
            throws IOException
    {
        java.util.List<Chunk> chunks = new java.util.ArrayList<>();
        Chunk chunk;
        do {
            chunk = readChunk();
            chunks.add(chunk);
        }
        while (!chunk.done());
        return chunks;
    }

    /** Rebuilds the data of a structured READ reply from its chunks; fails on gaps, overlaps or errors. */
    static byte[] assemble(java.util.List<Chunk> chunks, long offset, int length)
            throws IOException
    {
        byte[] data = new byte[length];
        boolean[] seen = new boolean[length];
        for (Chunk chunk : chunks) {
            ByteBuffer b = chunk.buffer();
            switch (chunk.type()) {
                case NbdProtocol.REPLY_TYPE_OFFSET_DATA: {
                    int at = (int) (b.getLong() - offset);
                    int n = b.remaining();
                    b.get(data, at, n);
                    mark(seen, at, n);
                    break;
                }
                case NbdProtocol.REPLY_TYPE_OFFSET_HOLE: {
                    int at = (int) (b.getLong() - offset);
                    mark(seen, at, b.getInt());
                    break;
                }
                case NbdProtocol.REPLY_TYPE_NONE:
                    break;
                default:
                    throw new IOException("chunk of type " + chunk.type() + " in a READ reply");
            }
        }
        for (int i = 0; i < length; i++) {
            if (!seen[i]) {
                throw new IOException("byte " + i + " of the read is in no chunk");
            }
        }
        return data;
    }

    private static void mark(boolean[] seen, int at, int n)
            throws IOException
    {
        for (int i = at; i < at + n; i++) {
            if (seen[i]) {
                throw new IOException("chunks overlap at byte " + i);
            }
            seen[i] = true;
        }
    }

    static byte[] infoRequest(String export, int... infos)
    {
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        ByteBuffer data = ByteBuffer.allocate(4 + name.length + 2 + 2 * infos.length)
                .putInt(name.length).put(name).putShort((short) infos.length);
        for (int info : infos) {
            data.putShort((short) info);
        }
        return data.array();
    }

    /** Reads the server's greeting and returns its handshake flags. */
    int readGreeting()
            throws IOException
    {
        long magic = in.readLong();
        if (magic != NBDMAGIC) {
            throw new IOException("bad NBDMAGIC " + Long.toHexString(magic));
        }
        long opt = in.readLong();
        if (opt != IHAVEOPT) {
            throw new IOException("bad IHAVEOPT " + Long.toHexString(opt));
        }
        return in.readUnsignedShort();
    }

    void sendClientFlags(int flags)
            throws IOException
    {
        out.writeInt(flags);
        out.flush();
    }

    void sendOption(int option, byte[] data)
            throws IOException
    {
        sendOptionHeader(option, data.length);
        out.write(data);
        out.flush();
    }

    void sendOptionHeader(int option, long length)
            throws IOException
    {
        out.writeLong(IHAVEOPT);
        out.writeInt(option);
        out.writeInt((int) length);
        out.flush();
    }

    OptionReply readOptionReply()
            throws IOException
    {
        long magic = in.readLong();
        if (magic != REPLY_MAGIC) {
            throw new IOException("bad option reply magic " + Long.toHexString(magic));
        }
        int option = in.readInt();
        int type = in.readInt();
        int length = in.readInt();
        byte[] data = new byte[length];
        in.readFully(data);
        return new OptionReply(option, type, data);
    }

    void sendRequest(int flags, int type, long cookie, long offset, long length)
            throws IOException
    {
        sendRequest(flags, type, cookie, offset, length, null);
    }

    void sendRequest(int flags, int type, long cookie, long offset, long length, byte[] payload)
            throws IOException
    {
        out.writeInt(REQUEST_MAGIC);
        out.writeShort(flags);
        out.writeShort(type);
        out.writeLong(cookie);
        out.writeLong(offset);
        out.writeInt((int) length);
        if (payload != null) {
            out.write(payload);
        }
        out.flush();
    }

    /** Writes raw bytes, e.g. garbage or a payload in pieces. */
    void sendRaw(byte[] bytes)
            throws IOException
    {
        out.write(bytes);
        out.flush();
    }

    /**
     * Writes raw bytes straight to the socket, so that another thread may read replies meanwhile (the
     * streams of {@link java.nio.channels.Channels} share one lock between reading and writing).
     */
    void sendRawWhileReading(byte[] bytes)
            throws IOException
    {
        out.flush();
        java.nio.ByteBuffer buffer = java.nio.ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }

    Reply readReply()
            throws IOException
    {
        int magic = in.readInt();
        if (magic != SIMPLE_REPLY_MAGIC) {
            throw new IOException("bad simple reply magic " + Integer.toHexString(magic));
        }
        int error = in.readInt();
        long cookie = in.readLong();
        return new Reply(error, cookie);
    }

    /** Whether the next reply is structured (a chunk) rather than simple; reads nothing. */
    boolean nextReplyIsStructured()
            throws IOException
    {
        in.mark(4);
        int magic = in.readInt();
        in.reset();
        return magic == NbdProtocol.STRUCTURED_REPLY_MAGIC;
    }

    byte[] readData(int length)
            throws IOException
    {
        byte[] data = new byte[length];
        in.readFully(data);
        return data;
    }

    void readFully(byte[] data)
            throws IOException
    {
        in.readFully(data);
    }

    /** True when the server closed the connection: the next read sees end of input. */
    boolean isClosedByServer()
            throws IOException
    {
        try {
            return in.read() < 0;
        }
        catch (EOFException e) {
            return true;
        }
        catch (IOException e) {
            // a reset counts as closed too
            return true;
        }
    }

    /** Round trip of one READ, returning its data; fails on an error reply. */
    byte[] read(long offset, int length)
            throws IOException
    {
        return read(0, offset, length);
    }

    /** Round trip of one READ with command flags, returning its data; fails on an error reply. */
    byte[] read(int flags, long offset, int length)
            throws IOException
    {
        sendRequest(flags, NbdProtocol.CMD_READ, 0xfeed, offset, length);
        Reply reply = readReply();
        if (reply.error() != 0 || reply.cookie() != 0xfeed) {
            throw new IOException("READ failed: " + reply);
        }
        return readData(length);
    }

    /** Round trip of one request without payload in the reply; returns the NBD error. */
    int roundTrip(int flags, int type, long offset, long length, byte[] payload)
            throws IOException
    {
        sendRequest(flags, type, 0xbeef, offset, length, payload);
        Reply reply = readReply();
        if (reply.cookie() != 0xbeef) {
            throw new IOException("unexpected cookie " + reply.cookie());
        }
        return reply.error();
    }

    @Override
    public void close()
            throws IOException
    {
        channel.close();
    }
}
