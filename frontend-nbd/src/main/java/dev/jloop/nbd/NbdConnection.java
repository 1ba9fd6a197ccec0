package dev.jloop.nbd;

import dev.jloop.api.ConnectionStatus;
import dev.jloop.api.Export;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.util.Locale;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.util.Objects.requireNonNull;

/**
 * One client: the handshake, then the transmission phase, on this connection's own thread: an
 * io_uring loop ({@link NbdUringLoop}) for a plain socket where it is available and chosen, else
 * the threaded transmission (this thread reads; a writer thread is added). Ends on ABORT, DISC, end of input, a
 * protocol error, when the handshake takes longer than the server allows, or when the server closes.
 */
final class NbdConnection
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(NbdConnection.class);

    private final String name;
    private final String peer;
    private final NbdExports exports;
    private final NbdTls tls;
    private final PagePool pagePool;
    private final NbdSettings settings;
    private final NbdTimeouts timeouts;
    // Replaced by the TLS channel after STARTTLS; read by threads that stop or close the connection.
    private volatile NbdChannel channel;
    private final AtomicBoolean handshakeOver = new AtomicBoolean();
    private final String client;
    private final String transport;
    private final NbdConnectionCounters counters = new NbdConnectionCounters();
    // set by the connection's thread once the handshake is over; read by status()
    private volatile String exportName;
    private volatile boolean tlsUp;
    private volatile NbdTransmission transmission;
    private volatile NbdUringLoop loop;

    NbdConnection(
            NbdChannel channel,
            String name,
            String peer,
            NbdExports exports,
            NbdTls tls,
            PagePool pagePool,
            NbdSettings settings,
            NbdTimeouts timeouts)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.name = requireNonNull(name, "name is null");
        this.peer = requireNonNull(peer, "peer is null");
        this.exports = requireNonNull(exports, "exports is null");
        this.tls = requireNonNull(tls, "tls is null");
        this.pagePool = requireNonNull(pagePool, "pagePool is null");
        this.settings = requireNonNull(settings, "settings is null");
        this.timeouts = requireNonNull(timeouts, "timeouts is null");
        // the peer is "nbd-conn-N ADDRESS": the address alone is the client
        int space = peer.indexOf(' ');
        String address = space < 0 ? peer : peer.substring(space + 1);
        // InetSocketAddress prints an address without a host name as "/127.0.0.1:41822"
        this.client = address.startsWith("/") ? address.substring(1) : address;
        this.transport = client.equals("stdio") ? "stdio" : client.startsWith("unix:") ? "unix" : "tcp";
    }

    /** This client now, for jloop status and the metrics; any thread. */
    ConnectionStatus status()
    {
        NbdTransmission serving = transmission;
        NbdUringLoop looping = loop;
        int inFlight = serving != null ? serving.inFlight() : looping != null ? looping.inFlight() : 0;
        return new ConnectionStatus(client, exportName, transport, tlsUp, inFlight,
                counters.requests(), counters.bytes(), counters.errors());
    }

    String name()
    {
        return name;
    }

    @Override
    public void run()
    {
        log.debug("{}: connection open", peer);
        long opened = System.nanoTime();
        ScheduledFuture<?> deadline = timeouts.handshakeDeadline(this::handshakeTimedOut);
        try {
            NbdHandshake handshake = new NbdHandshake(channel, exports, peer, tls, pagePool.capacity());
            Export export;
            try {
                export = handshake.negotiate();
            }
            finally {
                channel = handshake.channel();
                if (!handshakeOver.compareAndSet(false, true)) {
                    throw new EOFException("handshake timed out");
                }
                if (deadline != null) {
                    deadline.cancel(false);
                }
            }
            if (export != null) {
                exportName = export.name();
                tlsUp = handshake.tlsStarted();
                log.info("{}: open, export '{}', {}, TLS {}, {}{}", peer, export.name(), transport, tlsUp ? "on" : "off",
                        handshake.structuredReplies() ? "structured replies" : "simple replies",
                        handshake.baseAllocation(export) ? ", base:allocation" : "");
                int flags = handshake.transmissionFlags(export);
                NbdUringLoop loop = !settings.uringLoop() ? null : NbdUringLoop.open(
                        channel,
                        export.device(),
                        flags,
                        handshake.structuredReplies(),
                        handshake.baseAllocation(export),
                        pagePool,
                        settings.maxInflightBytes(),
                        settings.maxInflightRequests(),
                        peer,
                        counters,
                        settings.spliceMin(),
                        settings.spliceWriteMin(),
                        settings.multishotReceive(),
                        settings.busyPollNanos());
                if (loop != null) {
                    this.loop = loop;
                    ScheduledFuture<?> watchdog = timeouts.watchReplies(new ReplyWatchdog(loop));
                    try {
                        loop.run();
                    }
                    finally {
                        if (watchdog != null) {
                            watchdog.cancel(false);
                        }
                    }
                    return;
                }
                NbdTransmission transmission = new NbdTransmission(
                        channel,
                        export.device(),
                        flags,
                        handshake.structuredReplies(),
                        handshake.baseAllocation(export),
                        pagePool,
                        settings.maxInflightBytes(),
                        settings.maxInflightRequests(),
                        peer,
                        counters);
                this.transmission = transmission;
                ScheduledFuture<?> watchdog = timeouts.watchReplies(new ReplyWatchdog(transmission.writer()));
                try {
                    transmission.run(name);
                }
                finally {
                    if (watchdog != null) {
                        watchdog.cancel(false);
                    }
                }
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
            if (exportName != null) {
                NbdUringLoop looped = loop;
                long spliced = looped == null ? 0 : looped.splicedReads();
                long splicedWrites = looped == null ? 0 : looped.splicedWrites();
                log.info("{}: closed after {} s, export '{}', {} requests, {} bytes, {} errors{}{}", peer,
                        String.format(Locale.ROOT, "%.3f", (System.nanoTime() - opened) / 1e9), exportName,
                        counters.requests(), counters.bytes(), counters.errors(),
                        spliced > 0 ? ", " + spliced + " reads spliced" : "",
                        splicedWrites > 0 ? ", " + splicedWrites + " writes spliced" : "");
            }
            else {
                log.debug("{}: connection closed", peer);
            }
        }
    }

    /** Called by the server's timer: a client still in the handshake is dropped. */
    private void handshakeTimedOut()
    {
        if (handshakeOver.compareAndSet(false, true)) {
            log.warn("{}: handshake not finished within {} ms, closing the connection", peer, timeouts.handshakeTimeoutMillis());
            closeChannel();
        }
    }

    /**
     * Closes the connection when its replies have made no progress for {@code reply-timeout}
     * while some are waiting: the client stopped reading them, and its pages must come back for the
     * others. Sending then fails, the replies are dropped and the connection ends. Runs on the
     * server's timer.
     */
    private final class ReplyWatchdog
            implements Runnable
    {
        private final ReplyProgress writer;
        private long progress = -1;
        private long since;
        private boolean fired;

        ReplyWatchdog(ReplyProgress writer)
        {
            this.writer = requireNonNull(writer, "writer is null");
        }

        @Override
        public void run()
        {
            long now = System.nanoTime();
            long current = writer.progress();
            if (fired || !writer.busy() || current != progress) {
                progress = current;
                since = now;
                return;
            }
            if (now - since >= TimeUnit.MILLISECONDS.toNanos(timeouts.replyTimeoutMillis())) {
                fired = true;
                log.warn("{}: replies not taken for {} ms (reply-timeout), closing the connection", peer, timeouts.replyTimeoutMillis());
                closeChannel();
            }
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
