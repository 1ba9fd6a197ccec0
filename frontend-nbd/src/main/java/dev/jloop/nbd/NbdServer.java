package dev.jloop.nbd;

import dev.jloop.api.ConnectionStatus;
import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendStatus;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.channel.StdioNbdChannel;
import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;

import static java.util.Objects.requireNonNull;

/**
 * An NBD server (fixed newstyle, structured replies; docs/nbd.md) over TCP, a Unix socket, an
 * inherited (socket activation) socket or standard input/output, serving one or more exports,
 * with optional TLS. The server accepts clients on its {@link NbdListener} and limits how many it
 * serves at once; each one is an {@link NbdConnection} on a thread of its own (the reader:
 * handshake, then requests), which adds a writer thread for replies. Request data lives in pages
 * of one server-wide {@link PagePool}, which grows with the load and, when the server made it, gives
 * its memory back once idle ({@code page-pool-idle}).
 *
 * <p>Options ({@link FrontendConfig#options()}): see {@link NbdSettings}.
 *
 * <p>Ownership: the server owns its listener, its timeouts, the connections' threads, and the page
 * pool when it made it. {@link #close()} stops accepting, lets the connections finish (closing those
 * whose clients do not take their replies within {@code close-timeout}), then closes the rest.
 */
public final class NbdServer
        implements Frontend
{
    private static final Logger log = LoggerFactory.getLogger(NbdServer.class);

    private final NbdExports exports;
    private final PagePool pagePool;
    private final boolean ownsPagePool;
    private final NbdSettings settings;
    private final ThreadFactory connectionThreads;
    private final NbdTls tls;
    private final NbdTimeouts timeouts;
    private final NbdListener listener;
    private final boolean singleClient;
    private boolean servedSingleClient;
    private final String uri;
    private final Thread acceptThread;
    private final CountDownLatch ended = new CountDownLatch(1);
    private final Map<NbdConnection, Thread> connections = new LinkedHashMap<>();
    private int nextConnectionId;
    private boolean closed;

    /** Starts a server with its own page pool, sized by {@code page-pool-bytes}. */
    public static NbdServer start(FrontendConfig config, List<Export> exports)
            throws IOException
    {
        NbdSettings settings = NbdSettings.from(config, System.getenv());
        return startOwning(settings, exports, new PagePool(settings.pagePoolBytes()), Thread::new);
    }

    /** Starts a server that owns {@code pagePool}: closes it on failure as on {@link #close()}. */
    static NbdServer startOwning(FrontendConfig config, List<Export> exports, PagePool pagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        NbdSettings settings;
        try {
            settings = NbdSettings.from(config, System.getenv());
        }
        catch (RuntimeException e) {
            pagePool.close();
            throw e;
        }
        return startOwning(settings, exports, pagePool, connectionThreads);
    }

    private static NbdServer startOwning(NbdSettings settings, List<Export> exports, PagePool pagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        try {
            pagePool.reserve(settings.registeredBytes());
            for (Export export : exports) {
                export.device().registerMemory(pagePool.pinnedSlabs());
            }
            return new NbdServer(settings, exports, pagePool, true, connectionThreads);
        }
        catch (IOException | RuntimeException | Error e) {
            pagePool.close();
            throw e;
        }
    }

    /**
     * Starts a server whose request pages come from {@code pagePool} (shared with a backend that
     * registers its slabs, for example). The caller keeps ownership of the pool.
     */
    public static NbdServer start(FrontendConfig config, List<Export> exports, PagePool pagePool)
            throws IOException
    {
        return start(config, exports, pagePool, Thread::new);
    }

    /** As above; connection threads come from {@code connectionThreads}. */
    static NbdServer start(FrontendConfig config, List<Export> exports, PagePool pagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        NbdSettings settings = NbdSettings.from(config, System.getenv());
        return new NbdServer(settings, exports, requireNonNull(pagePool, "pagePool is null"), false, connectionThreads);
    }

    private NbdServer(NbdSettings settings, List<Export> exports, PagePool pagePool, boolean ownsPagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        this.connectionThreads = requireNonNull(connectionThreads, "connectionThreads is null");
        this.settings = requireNonNull(settings, "settings is null");
        this.exports = new NbdExports(exports);
        this.tls = NbdTls.load(settings.tls());
        this.singleClient = settings.stdio();
        this.pagePool = pagePool;
        this.ownsPagePool = ownsPagePool;

        if (settings.stdio() && !settings.socketActivation()) {
            NbdChannel channel = StdioNbdChannel.open();
            this.listener = null;
            this.uri = "stdio";
            this.acceptThread = null;
            this.timeouts = new NbdTimeouts(settings.handshakeTimeoutMillis(), settings.replyTimeoutMillis());
            synchronized (this) {
                NbdConnection connection = newConnection(channel, "nbd-conn-0", "stdio");
                Thread thread = new Thread(() -> runAndEnd(connection), "nbd-conn-0");
                thread.setDaemon(true);
                connections.put(connection, thread);
                thread.start();
            }
            log.info("NBD server serving one client on standard input/output");
            return;
        }
        this.listener = NbdListener.open(settings, this.exports.list().get(0).name());
        this.uri = listener.uri();
        // after binding, so a failed start leaves no thread behind
        this.timeouts = new NbdTimeouts(settings.handshakeTimeoutMillis(), settings.replyTimeoutMillis());
        if (ownsPagePool && settings.pagePoolIdleMillis() > 0) {
            timeouts.every(settings.pagePoolIdleMillis(), pagePool::trimIfIdle);
        }
        this.acceptThread = new Thread(this::acceptLoop, "nbd-accept");
        acceptThread.setDaemon(true);
        acceptThread.start();
        log.info("NBD server listening on {}{}, connections on {}", uri,
                settings.tls().mode() == NbdTls.Mode.OFF ? "" : " (TLS " + settings.tls().mode().name().toLowerCase(Locale.ROOT) + " on " + tls.engine() + ")",
                settings.uringLoop() ? "io_uring loops (TLS on threads)" : "threads");
    }

    @Override
    public String uri()
    {
        return uri;
    }

    /** As nbdkit's {@code --run} sets them: {@code uri}, {@code exportname}, {@code tls} (0, 1 or 2), and {@code unixsocket} or {@code port}. */
    @Override
    public Map<String, String> environment()
    {
        Map<String, String> environment = new LinkedHashMap<>();
        environment.put("uri", uri);
        environment.put("exportname", exports.list().get(0).name());
        environment.put("tls", Integer.toString(settings.tls().mode().ordinal()));
        if (listener != null) {
            listener.address().forEach(environment::put);
        }
        return environment;
    }

    @Override
    public boolean usesStandardStreams()
    {
        return settings.stdio();
    }

    /** With {@code stdio}: returns once the one client has gone. Otherwise waits for {@link #close()}. */
    @Override
    public void awaitEnd()
            throws InterruptedException
    {
        ended.await();
    }

    @Override
    public void close()
    {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (listener != null && listener.close()) {
            joinQuietly(acceptThread, 0);
        }
        Map<NbdConnection, Thread> snapshot;
        synchronized (this) {
            snapshot = new LinkedHashMap<>(connections);
        }
        for (NbdConnection connection : snapshot.keySet()) {
            connection.stopReading();
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(settings.closeTimeoutMillis());
        for (Thread thread : snapshot.values()) {
            joinQuietly(thread, Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
        }
        // All at once: a connection waiting for pages may depend on another one letting go of its own.
        for (Map.Entry<NbdConnection, Thread> entry : snapshot.entrySet()) {
            if (entry.getValue().isAlive()) {
                log.warn("{}: replies not taken within {} ms of closing, closing the connection", entry.getKey().name(), settings.closeTimeoutMillis());
                entry.getKey().closeChannel();
            }
        }
        // What is left are bios in the device, which completes each exactly once; their pages come back then.
        for (Thread thread : snapshot.values()) {
            joinQuietly(thread, 0);
        }
        if (listener != null) {
            listener.deleteSocketFile();
        }
        timeouts.close();
        if (ownsPagePool) {
            pagePool.close();
        }
        ended.countDown();
        log.info("NBD server on {} closed", uri);
    }

    private void acceptLoop()
    {
        while (true) {
            SocketChannel channel;
            try {
                channel = listener.accept();
            }
            catch (ClosedChannelException e) {
                return;
            }
            catch (IOException e) {
                synchronized (this) {
                    if (closed) {
                        return;
                    }
                }
                // e.g. EMFILE: keep serving the clients we have
                log.warn("accept failed: {}", e.toString());
                continue;
            }
            NbdConnection started = null;
            try {
                String peer = listener.prepare(channel);
                synchronized (this) {
                    if (closed) {
                        channel.close();
                        return;
                    }
                    // Ended connections stay listed until their threads are gone, so close() can join them.
                    connections.values().removeIf(thread -> !thread.isAlive());
                    if (singleClient && servedSingleClient) {
                        log.warn("{}: refused, this server serves one client only (stdio)", peer);
                        channel.close();
                        continue;
                    }
                    if (settings.maxConnections() > 0 && connections.size() >= settings.maxConnections()) {
                        log.warn("{}: refused, already serving max-connections={} clients", peer, settings.maxConnections());
                        channel.close();
                        continue;
                    }
                    int id = nextConnectionId++;
                    String name = "nbd-conn-" + id;
                    NbdConnection connection = newConnection(NbdChannel.of(channel), name, name + " " + peer);
                    started = connection;
                    Thread thread = connectionThreads.newThread(singleClient ? () -> runAndEnd(connection) : connection);
                    thread.setName(name);
                    thread.setDaemon(true);
                    connections.put(connection, thread);
                    servedSingleClient = singleClient;
                    thread.start();
                }
            }
            catch (Throwable e) {
                // Whatever went wrong (an OutOfMemoryError when no native thread can be made, say) concerns this
                // client only: the accept thread must go on serving the next ones.
                log.warn("cannot set up an accepted connection: {}", e.toString());
                synchronized (this) {
                    if (started != null) {
                        connections.remove(started);
                    }
                }
                try {
                    channel.close();
                }
                catch (IOException | RuntimeException ignored) {
                    // nothing more to do with it
                }
                if (!(e instanceof IOException)) {
                    // out of threads or memory: give the others a moment before the next client
                    try {
                        Thread.sleep(100);
                    }
                    catch (InterruptedException interrupted) {
                        return;
                    }
                }
            }
        }
    }

    @Override
    public FrontendStatus status()
    {
        List<NbdConnection> serving;
        synchronized (this) {
            serving = connections.entrySet().stream().filter(entry -> entry.getValue().isAlive()).map(Map.Entry::getKey).toList();
        }
        List<ConnectionStatus> clients = new ArrayList<>();
        for (NbdConnection connection : serving) {
            clients.add(connection.status());
        }
        long used = pagePool.usedBytes();
        return new FrontendStatus(clients, used, Math.max(0, pagePool.slabBytes() - used), List.of());
    }

    private NbdConnection newConnection(NbdChannel channel, String name, String peer)
    {
        return new NbdConnection(channel, name, peer, exports, tls, pagePool, settings, timeouts);
    }

    private void runAndEnd(NbdConnection connection)
    {
        try {
            connection.run();
        }
        finally {
            ended.countDown();
        }
    }

    private static boolean joinQuietly(Thread thread, long millis)
    {
        try {
            thread.join(millis);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return !thread.isAlive();
    }
}
