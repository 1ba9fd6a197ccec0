package dev.jloop.nbd;

import dev.jloop.api.Export;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;

import static java.util.Objects.requireNonNull;

/**
 * One client: the handshake, then the transmission phase, on this connection's own thread (which
 * is the reader; the transmission adds a writer thread). Ends on ABORT, DISC, end of input, a
 * protocol error, or when the server closes.
 */
final class NbdConnection
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(NbdConnection.class);

    private final NbdServer server;
    private final NbdChannel channel;
    private final String name;
    private final String peer;

    NbdConnection(NbdServer server, SocketChannel channel, String name, String peer)
    {
        this.server = requireNonNull(server, "server is null");
        this.channel = NbdChannel.of(requireNonNull(channel, "channel is null"));
        this.name = requireNonNull(name, "name is null");
        this.peer = requireNonNull(peer, "peer is null");
    }

    String name()
    {
        return name;
    }

    @Override
    public void run()
    {
        log.debug("{}: connection open", peer);
        try {
            NbdHandshake handshake = new NbdHandshake(channel, server.exports(), server.exportsByName(), peer);
            Export export = handshake.negotiate();
            if (export != null) {
                log.debug("{}: serving export '{}'", peer, export.name());
                int flags = handshake.transmissionFlags(export);
                new NbdTransmission(
                        channel,
                        export.device(),
                        flags,
                        handshake.structuredReplies(),
                        handshake.baseAllocation(export),
                        server.pagePool(),
                        server.maxInflightBytes(),
                        server.maxInflightRequests(),
                        peer)
                        .run(name);
            }
        }
        catch (NbdProtocolException e) {
            log.warn("{}: protocol error, closing the connection: {}", peer, e.getMessage());
        }
        catch (EOFException | ClosedChannelException e) {
            log.debug("{}: connection ended: {}", peer, e.toString());
        }
        catch (IOException e) {
            log.warn("{}: connection failed: {}", peer, e.toString());
        }
        catch (RuntimeException e) {
            log.error("{}: connection failed", peer, e);
        }
        finally {
            closeChannel();
            log.debug("{}: connection closed", peer);
        }
    }

    /** Makes the reader see end of input: no new requests, but replies still go out. */
    void stopReading()
    {
        try {
            channel.shutdownInput();
        }
        catch (IOException e) {
            // not connected any more: nothing to stop
        }
    }

    /** Closes the socket under a client that does not take its replies. */
    void closeChannel()
    {
        try {
            channel.close();
        }
        catch (IOException e) {
            log.debug("{}: close failed: {}", peer, e.toString());
        }
    }
}
