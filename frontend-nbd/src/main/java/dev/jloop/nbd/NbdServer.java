package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.channel.StdioNbdChannel;
import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channel;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;

import static java.util.Objects.requireNonNull;

/**
 * An NBD server (fixed newstyle, structured replies; docs/nbd.md) over TCP, a Unix socket, an
 * inherited (socket activation) socket or standard input/output, serving one or more exports,
 * with optional TLS. Each connection has a reader thread (handshake, then requests) and a writer
 * thread (replies); request data lives in pages of one server-wide {@link PagePool}.
 *
 * <p>Options ({@link FrontendConfig#options()}): see {@link NbdSettings}.
 */
public final class NbdServer
        implements Frontend
{
    private static final Logger log = LoggerFactory.getLogger(NbdServer.class);

    private final List<Export> exports;
    private final Map<String, Export> exportsByName;
    private final PagePool pagePool;
    private final boolean ownsPagePool;
    private final NbdSettings settings;
    private final ThreadFactory connectionThreads;
    private final NbdTls tls;
    private final ScheduledExecutorService timer;
    private final List<Thread> timerThreads = new CopyOnWriteArrayList<>();
    private final ServerSocketChannel listener;
    private final Path socketPath;
    private final boolean unixSocket;
    private final boolean singleClient;
    // An inherited listener stays open: closing it points stdin, stdout and stderr at /dev/null (sun.nio.ch.InheritedChannel).
    private final boolean inheritedListener;
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
        NbdSettings settings = NbdSettings.fromOptions(config.options());
        return startOwning(config, settings, exports, new PagePool(settings.pagePoolBytes()), Thread::new);
    }

    /** Starts a server that owns {@code pagePool}: closes it on failure as on {@link #close()}. */
    static NbdServer startOwning(FrontendConfig config, List<Export> exports, PagePool pagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        NbdSettings settings;
        try {
            settings = NbdSettings.fromOptions(config.options());
        }
        catch (RuntimeException e) {
            pagePool.close();
            throw e;
        }
        return startOwning(config, settings, exports, pagePool, connectionThreads);
    }

    private static NbdServer startOwning(FrontendConfig config, NbdSettings settings, List<Export> exports, PagePool pagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        try {
            pagePool.reserve(settings.registeredBytes());
            for (Export export : exports) {
                export.device().registerMemory(pagePool.slabs());
            }
            return new NbdServer(config, settings, exports, pagePool, true, connectionThreads);
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
        NbdSettings settings = NbdSettings.fromOptions(config.options());
        return new NbdServer(config, settings, exports, requireNonNull(pagePool, "pagePool is null"), false, connectionThreads);
    }

    private NbdServer(FrontendConfig config, NbdSettings settings, List<Export> exports, PagePool pagePool, boolean ownsPagePool, ThreadFactory connectionThreads)
            throws IOException
    {
        this.connectionThreads = requireNonNull(connectionThreads, "connectionThreads is null");
        requireNonNull(config, "config is null");
        this.settings = requireNonNull(settings, "settings is null");
        this.exports = List.copyOf(requireNonNull(exports, "exports is null"));
        if (this.exports.isEmpty()) {
            throw new IllegalArgumentException("no exports to serve");
        }
        Map<String, Export> byName = new LinkedHashMap<>();
        for (Export export : this.exports) {
            if (byName.put(export.name(), export) != null) {
                throw new IllegalArgumentException("two exports named '" + export.name() + "'");
            }
            if (export.name().getBytes(StandardCharsets.UTF_8).length > 4096) {
                throw new IllegalArgumentException("export name longer than the protocol's 4096 bytes: " + export.name());
            }
        }
        this.exportsByName = Map.copyOf(byName);
        this.tls = NbdTls.load(settings.tls());
        boolean stdio = settings.stdio();
        boolean activated = settings.socketActivation();
        this.singleClient = stdio;
        this.inheritedListener = activated;
        this.pagePool = pagePool;
        this.ownsPagePool = ownsPagePool;

        String firstExport = this.exports.get(0).name();
        if (stdio && !activated) {
            NbdChannel channel = StdioNbdChannel.open();
            this.listener = null;
            this.socketPath = null;
            this.unixSocket = false;
            this.uri = "stdio";
            this.acceptThread = null;
            this.timer = newTimer();
            synchronized (this) {
                NbdConnection connection = new NbdConnection(this, channel, "nbd-conn-0", "stdio");
                Thread thread = new Thread(() -> runAndEnd(connection), "nbd-conn-0");
                thread.setDaemon(true);
                connections.put(connection, thread);
                thread.start();
            }
            log.info("NBD server serving one client on standard input/output");
            return;
        }
        if (activated) {
            Channel inherited = System.inheritedChannel();
            if (!(inherited instanceof ServerSocketChannel)) {
                throw new IOException("socket activation: standard input is not the listening socket (" + inherited
                        + "); start jloop through bin/jloop, which moves LISTEN_FDS' descriptor 3 there");
            }
            ServerSocketChannel channel = (ServerSocketChannel) inherited;
            channel.configureBlocking(true);
            this.listener = channel;
            // The activator made the socket and removes it: not ours to delete.
            this.socketPath = null;
            SocketAddress address = channel.getLocalAddress();
            if (address instanceof UnixDomainSocketAddress) {
                this.unixSocket = true;
                this.uri = "nbd+unix:///" + encode(firstExport, false) + "?socket=" + encode(((UnixDomainSocketAddress) address).getPath().toString(), true);
            }
            else {
                this.unixSocket = false;
                InetSocketAddress inet = (InetSocketAddress) address;
                String host = inet.getAddress().getHostAddress();
                this.uri = "nbd://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + inet.getPort() + "/" + encode(firstExport, false);
            }
        }
        else if (config.socket().isPresent()) {
            Path path = config.socket().get().toAbsolutePath();
            removeStaleSocket(path);
            ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                channel.bind(UnixDomainSocketAddress.of(path));
            }
            catch (IOException e) {
                channel.close();
                throw new IOException("cannot listen on Unix socket " + path + ": " + e.getMessage(), e);
            }
            this.listener = channel;
            this.socketPath = path;
            this.unixSocket = true;
            this.uri = "nbd+unix:///" + encode(firstExport, false) + "?socket=" + encode(path.toString(), true);
        }
        else {
            ServerSocketChannel channel = ServerSocketChannel.open();
            try {
                channel.setOption(StandardSocketOptions.SO_REUSEADDR, true);
                channel.bind(new InetSocketAddress(config.host(), config.port()));
            }
            catch (IOException e) {
                channel.close();
                throw new IOException("cannot listen on " + config.host() + ":" + config.port() + ": " + e.getMessage(), e);
            }
            this.listener = channel;
            this.socketPath = null;
            this.unixSocket = false;
            int port = ((InetSocketAddress) channel.getLocalAddress()).getPort();
            String host = config.host().contains(":") ? "[" + config.host() + "]" : config.host();
            this.uri = "nbd://" + host + ":" + port + "/" + encode(firstExport, false);
        }
        // after binding, so a failed start leaves no thread behind
        this.timer = newTimer();
        this.acceptThread = new Thread(this::acceptLoop, "nbd-accept");
        acceptThread.setDaemon(true);
        acceptThread.start();
        log.info("NBD server listening on {}", uri);
    }

    @Override
    public String uri()
    {
        return uri;
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
        if (listener != null && !inheritedListener) {
            try {
                listener.close();
            }
            catch (IOException e) {
                log.warn("closing the listening socket failed: {}", e.toString());
            }
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
        if (socketPath != null) {
            try {
                Files.deleteIfExists(socketPath);
            }
            catch (IOException e) {
                log.warn("cannot remove socket {}: {}", socketPath, e.toString());
            }
        }
        if (timer != null) {
            timer.shutdownNow();
            awaitQuietly(timer);
            // a terminated executor's thread may still be finishing
            timerThreads.forEach(thread -> joinQuietly(thread, 0));
        }
        if (ownsPagePool) {
            pagePool.close();
        }
        ended.countDown();
        log.info("NBD server on {} closed", uri);
    }

    List<Export> exports()
    {
        return exports;
    }

    Map<String, Export> exportsByName()
    {
        return exportsByName;
    }

    PagePool pagePool()
    {
        return pagePool;
    }

    NbdSettings settings()
    {
        return settings;
    }

    NbdTls tls()
    {
        return tls;
    }

    /**
     * Drops the connection unless its handshake is over within {@code handshake-timeout-ms}; the
     * caller cancels the returned future when it is. Null when there is no limit.
     */
    ScheduledFuture<?> handshakeDeadline(NbdConnection connection)
    {
        if (timer == null || settings.handshakeTimeoutMillis() == 0) {
            return null;
        }
        try {
            return timer.schedule(connection::handshakeTimedOut, settings.handshakeTimeoutMillis(), TimeUnit.MILLISECONDS);
        }
        catch (RejectedExecutionException e) {
            // closing: the connection is being stopped anyway
            return null;
        }
    }

    /**
     * Runs {@code check} several times per {@code reply-timeout-ms} until the caller cancels the
     * returned future. Null when there is no reply timeout.
     */
    ScheduledFuture<?> watchReplies(Runnable check)
    {
        if (timer == null || settings.replyTimeoutMillis() == 0) {
            return null;
        }
        long period = Math.max(10, settings.replyTimeoutMillis() / 4);
        try {
            return timer.scheduleAtFixedRate(check, period, period, TimeUnit.MILLISECONDS);
        }
        catch (RejectedExecutionException e) {
            // closing: the connection is being stopped anyway
            return null;
        }
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
                String peer;
                if (!unixSocket) {
                    channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
                    peer = String.valueOf(channel.getRemoteAddress());
                }
                else {
                    peer = "unix:" + (socketPath != null ? socketPath : channel.getLocalAddress());
                }
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
                    NbdConnection connection = new NbdConnection(this, NbdChannel.of(channel), name, name + " " + peer);
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

    private ScheduledExecutorService newTimer()
    {
        if (settings.handshakeTimeoutMillis() == 0 && settings.replyTimeoutMillis() == 0) {
            return null;
        }
        return Executors.newSingleThreadScheduledExecutor(runnable -> {
            Thread thread = new Thread(runnable, "nbd-timer");
            thread.setDaemon(true);
            timerThreads.add(thread);
            return thread;
        });
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

    /** A socket file left by a server that died is removed; a live one, or any other file, is an error. */
    private static void removeStaleSocket(Path path)
            throws IOException
    {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        }
        catch (NoSuchFileException e) {
            return;
        }
        if (!attributes.isOther()) {
            throw new IOException("cannot listen on " + path + ": it exists and is not a socket");
        }
        try (SocketChannel probe = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
            throw new IOException("cannot listen on " + path + ": another server is listening there");
        }
        catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("cannot listen on")) {
                throw e;
            }
            Files.deleteIfExists(path);
        }
    }

    /** Percent-encodes all but RFC 3986 unreserved characters (and '/' where {@code keepSlash}). */
    static String encode(String text, boolean keepSlash)
    {
        StringBuilder out = new StringBuilder();
        for (byte b : text.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '.' || c == '_' || c == '~' || (keepSlash && c == '/')) {
                out.append((char) c);
            }
            else {
                out.append('%').append(String.format("%02X", c));
            }
        }
        return out.toString();
    }

    private static void awaitQuietly(ExecutorService executor)
    {
        try {
            executor.awaitTermination(1, TimeUnit.MINUTES);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
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
