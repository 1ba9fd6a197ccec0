package dev.jloop.nbd;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
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

    private final SocketChannel channel;
    private final DataInputStream in;
    private final DataOutputStream out;
    long exportSize;
    int transmissionFlags;

    NbdTestClient(SocketAddress address)
            throws IOException
    {
        this.channel = SocketChannel.open(address);
        this.in = new DataInputStream(new BufferedInputStream(Channels.newInputStream(channel)));
        this.out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 16));
    }

    /** Connects and goes through the handshake to the transmission phase of {@code export} with NBD_OPT_GO. */
    static NbdTestClient open(SocketAddress address, String export)
            throws IOException
    {
        NbdTestClient client = new NbdTestClient(address);
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
        sendRequest(0, NbdProtocol.CMD_READ, 0xfeed, offset, length);
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
