package dev.jloop.dist;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Bio;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.api.Sizes;
import dev.jloop.api.StillServingException;
import dev.jloop.loop.LoopDevice;
import jakarta.inject.Inject;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.net.BindException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static java.util.Objects.requireNonNull;

/**
 * One running {@code jloop serve}: for each export a backing file and its loop device, then the
 * frontend serving them all; started in that order and closed in the reverse order.
 */
final class JloopServer
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(JloopServer.class);
    private static final int DEFAULT_QUEUE_DEPTH = 64;

    private final ServeOptions options;
    private final PluginCli pluginCli;
    private final BackendFactory backend;
    private final FrontendFactory frontend;
    private final Deque<Closeable> started = new ArrayDeque<>();
    private final List<String> exportNames = new ArrayList<>();
    private Frontend running;

    @Inject
    JloopServer(ServeOptions options, BackendFactory backend, FrontendFactory frontend, PluginCli pluginCli)
    {
        this.options = requireNonNull(options, "options is null");
        this.pluginCli = requireNonNull(pluginCli, "pluginCli is null");
        this.backend = requireNonNull(backend, "backend is null");
        this.frontend = requireNonNull(frontend, "frontend is null");
    }

    /** Starts serving; returns the line that tells the user where. */
    String start()
    {
        return start(listenConfig(), Map.of());
    }

    /**
     * Starts serving at {@code where} (host and port, or a socket) with the frontend options the CLI
     * gives plus {@code frontendOptions}; returns the line that tells the user where.
     */
    String start(FrontendConfig where, Map<String, String> frontendOptions)
    {
        // checked before any file is created or opened
        List<PluginOption> chosen = new ArrayList<>(backend.options());
        chosen.addAll(frontend.options());
        pluginCli.checkGivenOnlyFor(chosen, "the backend is '" + backend.name() + "'" + (options.backend.equals("auto") ? " (auto)" : "")
                + " and the frontend '" + frontend.name() + "'");
        Map<String, String> backendOptions = pluginCli.given(backend.options(), genericOptions());
        checkOptions("the " + backend.name() + " backend", backend.options(), backendOptions);
        Map<String, String> allOptions = new LinkedHashMap<>(frontendOptions());
        allOptions.putAll(frontendOptions);
        List<ExportSpec> specs = exportSpecs();
        List<Export> exports = new ArrayList<>();
        List<String> served = new ArrayList<>();
        try {
            for (ExportSpec spec : specs) {
                Path file = spec.file();
                prepareFile(file, spec.size(), spec.file() == options.file ? "--size SIZE" : "size=SIZE to its --export");
                BackendConfig config = new BackendConfig(file, options.readOnly || spec.readOnly(), options.direct,
                        options.queueDepth != null ? options.queueDepth : DEFAULT_QUEUE_DEPTH,
                        backendOptions);
                BackingFile backingFile = openBackingFile(config);
                started.push(backingFile);
                LoopDevice device = loopDevice(backingFile, config);
                started.pop();
                started.push(device);
                long deviceSize = device.size();
                String description = spec.description() != null ? spec.description() : file.getFileName() + " (" + Sizes.format(deviceSize) + ")";
                exports.add(new Export(spec.name(), description, device));
                exportNames.add(spec.name());
                served.add(specs.size() == 1
                        ? file + ", " + Sizes.format(deviceSize)
                        : "'" + spec.name() + "' " + file + " " + Sizes.format(deviceSize) + (config.readOnly() ? " read-only" : ""));
            }

            FrontendConfig frontendConfig = new FrontendConfig(where.host(), where.port(), where.socket().orElse(null), allOptions);
            running = createFrontend(frontendConfig, exports);
            started.push(running);
        }
        catch (RuntimeException e) {
            closeQuietly(e);
            throw e;
        }
        return String.format("jloop: serving %s: %s, backend %s%s, frontend %s%s",
                running.uri(), String.join("; ", served), backend.name(), options.backend.equals("auto") ? " (auto)" : "",
                frontend.name(), options.tls.equals("off") ? "" : ", tls " + options.tls);
    }

    /** Where the CLI asks to serve: --socket, or --listen (default 127.0.0.1:10809). */
    FrontendConfig listenConfig()
    {
        if (options.socket != null && options.listen != null) {
            throw new UserException("--socket and --listen exclude each other: serve on a Unix socket or on TCP");
        }
        Listen listen = Listen.parse(options.listen != null ? options.listen : ServeOptions.DEFAULT_LISTEN);
        return new FrontendConfig(listen.host(), listen.port(), options.socket, Map.of());
    }

    /** The positional FILE (named by a plain --export NAME) first, then every --export NAME=FILE in order. */
    List<ExportSpec> exportSpecs()
    {
        List<String> names = new ArrayList<>();
        List<ExportSpec> specs = new ArrayList<>();
        for (String text : options.exports) {
            if (ExportSpec.isSpec(text)) {
                specs.add(ExportSpec.parse(text));
            }
            else {
                names.add(text);
            }
        }
        if (names.size() > 1) {
            throw new UserException("--export NAME given " + names.size() + " times (" + String.join(", ", names)
                    + "); it names FILE: add further exports as --export " + ExportSpec.SYNTAX);
        }
        if (options.file != null) {
            specs.add(0, new ExportSpec(names.isEmpty() ? "" : names.get(0), options.file, options.size, false, null));
        }
        else if (options.size != null) {
            throw new UserException("--size is the size of FILE, but no FILE is given; size each export with --export NAME=FILE,size=SIZE");
        }
        if (options.file == null && !names.isEmpty()) {
            throw new UserException("--export " + names.get(0) + " names FILE, but no FILE is given; to serve a file under that name use --export "
                    + names.get(0) + "=FILE");
        }
        if (specs.isEmpty()) {
            throw new UserException("nothing to serve: give FILE, or --export " + ExportSpec.SYNTAX);
        }
        Set<String> seen = new HashSet<>();
        for (ExportSpec spec : specs) {
            if (!seen.add(spec.name())) {
                throw new UserException("two exports are named '" + spec.name() + "'" + (spec.name().isEmpty() ? " (the empty name is FILE's unless --export NAME names it)" : ""));
            }
        }
        return specs;
    }

    /** The frontend options from the command line, as the chosen frontend names them. */
    private Map<String, String> frontendOptions()
    {
        return frontend.name().equals("ublk") ? ublkOptions() : nbdOptions();
    }

    /**
     * Queues, queue depth and device id; unset ones are left out. The NBD-only options are refused
     * here rather than ignored, so a user never believes TLS or a connection limit is in force.
     */
    private Map<String, String> ublkOptions()
    {
        List<String> nbdOnly = new ArrayList<>();
        if (!options.tls.equals("off")) {
            nbdOnly.add("--tls");
        }
        if (options.tlsCertificates != null) {
            nbdOnly.add("--tls-certificates");
        }
        if (options.tlsCert != null) {
            nbdOnly.add("--tls-cert");
        }
        if (options.tlsKey != null) {
            nbdOnly.add("--tls-key");
        }
        if (options.tlsCa != null) {
            nbdOnly.add("--tls-ca");
        }
        if (options.tlsVerifyPeer) {
            nbdOnly.add("--tls-verify-peer");
        }
        if (options.handshakeTimeout != null) {
            nbdOnly.add("--handshake-timeout");
        }
        if (options.replyTimeout != null) {
            nbdOnly.add("--reply-timeout");
        }
        if (options.maxConnections != 0) {
            nbdOnly.add("--max-connections");
        }
        if (options.run != null) {
            nbdOnly.add("--run");
        }
        if (options.stdio) {
            nbdOnly.add("--stdio");
        }
        if (options.socket != null || options.listen != null) {
            nbdOnly.add(options.socket != null ? "--socket" : "--listen");
        }
        if (!nbdOnly.isEmpty()) {
            throw new UserException(String.join(", ", nbdOnly) + " apply to --frontend nbd only");
        }
        Map<String, String> map = pluginCli.given(frontend.options(), genericOptions());
        checkOptions("the " + frontend.name() + " frontend", frontend.options(), map);
        return map;
    }

    /** TLS and connection limits, named as the NBD frontend (NbdSettings) takes them. */
    private Map<String, String> nbdOptions()
    {
        Map<String, String> map = new LinkedHashMap<>();
        if (options.maxConnections < 0) {
            throw new UserException("--max-connections must be 0 (no limit) or more, not " + options.maxConnections);
        }
        int handshakeTimeout = options.handshakeTimeout != null ? options.handshakeTimeout : ServeOptions.DEFAULT_HANDSHAKE_TIMEOUT;
        if (handshakeTimeout < 0) {
            throw new UserException("--handshake-timeout must be 0 (none) or more seconds, not " + handshakeTimeout);
        }
        int replyTimeout = options.replyTimeout != null ? options.replyTimeout : ServeOptions.DEFAULT_REPLY_TIMEOUT;
        if (replyTimeout < 0) {
            throw new UserException("--reply-timeout must be 0 (none) or more seconds, not " + replyTimeout);
        }
        if (options.maxConnections > 0) {
            map.put("max-connections", Integer.toString(options.maxConnections));
        }
        map.put("handshake-timeout-ms", Long.toString(handshakeTimeout * 1000L));
        map.put("reply-timeout-ms", Long.toString(replyTimeout * 1000L));
        if (!List.of("off", "on", "require").contains(options.tls)) {
            throw new UserException("bad --tls '" + options.tls + "': expected off, on or require");
        }
        if (!options.tls.equals("off")) {
            map.put("tls", options.tls);
        }
        else if (options.tlsCertificates != null || options.tlsCert != null || options.tlsKey != null || options.tlsCa != null || options.tlsVerifyPeer) {
            throw new UserException("TLS certificates given but --tls is off: add --tls on or --tls require");
        }
        if (options.tlsCa != null && !options.tlsVerifyPeer) {
            throw new UserException("--tls-ca is the CA that client certificates are checked against, which only --tls-verify-peer does: "
                    + "add --tls-verify-peer, or drop --tls-ca");
        }
        putPath(map, "tls-certificates", options.tlsCertificates);
        putPath(map, "tls-cert", options.tlsCert);
        putPath(map, "tls-key", options.tlsKey);
        putPath(map, "tls-ca", options.tlsCa);
        if (options.tlsVerifyPeer) {
            map.put("tls-verify-peer", "true");
        }
        return map;
    }

    /** Values of serve's own options that a plugin may declare as well, such as --queue-depth. */
    private Map<String, String> genericOptions()
    {
        return options.queueDepth == null ? Map.of() : Map.of("queue-depth", options.queueDepth.toString());
    }

    /** A plugin's options checked before any file is created, with the plugin's own message. */
    private static void checkOptions(String plugin, List<PluginOption> declared, Map<String, String> given)
    {
        try {
            PluginOptions.parse(plugin, declared, given);
        }
        catch (IllegalArgumentException e) {
            throw new UserException(e.getMessage(), e);
        }
    }

    private static void putPath(Map<String, String> map, String key, Path path)
    {
        if (path != null) {
            map.put(key, path.toAbsolutePath().toString());
        }
    }

    private void prepareFile(Path file, String sizeText, String howToSize)
    {
        if (sizeText == null) {
            if (!Files.exists(file)) {
                throw new UserException(file + ": no such file (add " + howToSize + " to create it)");
            }
            return;
        }
        long wanted = ExportSpec.parseSize(sizeText);
        // setLength extends with ftruncate, which keeps the new range sparse.
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            long current = raf.length();
            if (current < wanted) {
                raf.setLength(wanted);
            }
            else if (current > wanted) {
                log.warn("{} is already {} bytes, larger than --size {}; serving it whole, nothing is truncated", file, current, wanted);
            }
        }
        catch (IOException e) {
            throw new UserException("cannot create " + file + ": " + e.getMessage(), e);
        }
    }

    private BackingFile openBackingFile(BackendConfig config)
    {
        try {
            return backend.open(config);
        }
        catch (IOException e) {
            throw new UserException("cannot open " + config.path() + " with backend " + backend.name() + ": " + e.getMessage(), e);
        }
    }

    private LoopDevice loopDevice(BackingFile file, BackendConfig config)
    {
        try {
            return new LoopDevice(file, new AioKernel(), config.path().getFileName().toString());
        }
        catch (UncheckedIOException e) {
            throw new UserException("cannot serve " + config.path() + " with backend " + backend.name() + ": " + e.getCause().getMessage(), e);
        }
    }

    private Frontend createFrontend(FrontendConfig config, List<Export> exports)
    {
        try {
            return frontend.create(config, exports);
        }
        catch (BindException e) {
            String where = config.socket().map(Path::toString).orElse(config.host() + ":" + config.port());
            throw new UserException("cannot listen on " + where + ": " + e.getMessage()
                    + (config.socket().isEmpty() ? " (is another NBD server running? pick another port with --listen)" : ""), e);
        }
        catch (IOException e) {
            throw new UserException("cannot start the " + frontend.name() + " frontend: " + e.getMessage(), e);
        }
        catch (IllegalArgumentException e) {
            // the frontend's check of its options: a bad certificate or key, for example
            throw new UserException(e.getMessage(), e);
        }
    }

    String uri()
    {
        return running.uri();
    }

    /** The name of the first export, the one clients get when they ask for the empty name. */
    String firstExportName()
    {
        return exportNames.get(0);
    }

    /** Waits until the frontend ends on its own (the one client of --stdio has gone). */
    void awaitEnd()
            throws InterruptedException
    {
        running.awaitEnd();
    }

    /**
     * Stops the frontend (letting requests in flight finish), then flushes and closes the device. A
     * frontend that cannot stop ({@link StillServingException}) still uses the devices: they are
     * flushed and left open, and the process must end to stop it.
     */
    @Override
    public void close()
            throws IOException
    {
        IOException failure = null;
        while (!started.isEmpty()) {
            Closeable next = started.pop();
            try {
                next.close();
            }
            catch (StillServingException e) {
                log.error("{}", e.getMessage());
                flushOpenDevices();
                throw new IOException(e.getMessage() + "; the files were flushed and stay open until jloop exits", e);
            }
            catch (IOException | RuntimeException e) {
                if (failure == null) {
                    failure = e instanceof IOException ? (IOException) e : new IOException(e);
                }
                else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** What every device acknowledged becomes durable, while they stay open for a frontend that still serves. */
    private void flushOpenDevices()
    {
        for (Closeable closeable : started) {
            if (closeable instanceof LoopDevice device && !device.capabilities().readOnly()) {
                CompletableFuture<Integer> flushed = new CompletableFuture<>();
                device.submit(new Bio().init(Bio.Op.FLUSH, 0, 0, 0, null).setEndIo((bio, error) -> flushed.complete(error), null));
                try {
                    int error = flushed.get(60, TimeUnit.SECONDS);
                    if (error != 0) {
                        log.error("flush failed: {}", Errno.name(error));
                    }
                }
                catch (ExecutionException | TimeoutException e) {
                    log.error("flush did not finish: {}", e.toString());
                }
                catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    private void closeQuietly(Exception cause)
    {
        try {
            close();
        }
        catch (IOException | UncheckedIOException e) {
            cause.addSuppressed(e);
        }
    }

    /** A {@code HOST:PORT} as {@code --listen} takes it; IPv6 hosts in brackets. */
    record Listen(String host, int port)
    {
        static Listen parse(String text)
        {
            int colon = text.lastIndexOf(':');
            if (colon < 0) {
                throw new UserException("bad --listen '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:10809");
            }
            String host = text.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            if (host.isEmpty()) {
                host = "0.0.0.0";
            }
            try {
                int port = Integer.parseInt(text.substring(colon + 1));
                if (port < 0 || port > 65535) {
                    throw new NumberFormatException();
                }
                return new Listen(host, port);
            }
            catch (NumberFormatException e) {
                throw new UserException("bad --listen '" + text + "': port must be a number from 0 to 65535");
            }
        }
    }
}
