package dev.jloop.dist;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
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
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * One running {@code jloop serve}: the backing file, its loop device and the frontend, started in
 * that order and closed in the reverse order.
 */
final class JloopServer
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(JloopServer.class);
    private static final int DEFAULT_QUEUE_DEPTH = 64;

    private final ServeOptions options;
    private final BackendFactory backend;
    private final FrontendFactory frontend;
    private final Deque<Closeable> started = new ArrayDeque<>();
    private Frontend running;
    private long size;

    @Inject
    JloopServer(ServeOptions options, BackendFactory backend, FrontendFactory frontend)
    {
        this.options = requireNonNull(options, "options is null");
        this.backend = requireNonNull(backend, "backend is null");
        this.frontend = requireNonNull(frontend, "frontend is null");
    }

    /** Starts serving; returns the line that tells the user where. */
    String start()
    {
        Path file = options.file;
        prepareFile(file);
        BackendConfig config = new BackendConfig(file, options.readOnly, options.direct,
                options.queueDepth != null ? options.queueDepth : DEFAULT_QUEUE_DEPTH,
                Map.of("uring-sqpoll", Boolean.toString(options.uringSqpoll)));
        try {
            BackingFile backingFile = openBackingFile(config);
            started.push(backingFile);
            LoopDevice device = new LoopDevice(backingFile, new AioKernel(), file.getFileName().toString());
            started.pop();
            started.push(device);
            size = device.size();

            Listen listen = Listen.parse(options.listen);
            FrontendConfig frontendConfig = new FrontendConfig(listen.host(), listen.port(), options.socket, frontendOptions());
            String description = file.getFileName() + " (" + Sizes.format(size) + ")";
            running = createFrontend(frontendConfig, List.of(new Export(options.export, description, device)));
            started.push(running);
        }
        catch (RuntimeException e) {
            closeQuietly(e);
            throw e;
        }
        return String.format("jloop: serving %s: %s, %s, backend %s%s, frontend %s",
                running.uri(), file, Sizes.format(size), backend.name(), options.backend.equals("auto") ? " (auto)" : "",
                frontend.name());
    }

    /**
     * Settings only the ublk frontend reads (queues, queue depth, device id); unset ones are left out,
     * and other frontends get none (the NBD server refuses options it does not know).
     */
    private Map<String, String> frontendOptions()
    {
        Map<String, String> frontendOptions = new HashMap<>();
        if (!frontend.name().equals("ublk")) {
            if (options.queues != null || options.ublkId != null) {
                throw new UserException("--queues and --ublk-id apply to --frontend ublk only");
            }
            return frontendOptions;
        }
        if (options.queues != null) {
            frontendOptions.put("queues", options.queues.toString());
        }
        if (options.queueDepth != null) {
            frontendOptions.put("queue-depth", options.queueDepth.toString());
        }
        if (options.ublkId != null) {
            frontendOptions.put("ublk-id", options.ublkId.toString());
        }
        return frontendOptions;
    }

    private void prepareFile(Path file)
    {
        if (options.size == null) {
            if (!Files.exists(file)) {
                throw new UserException(file + ": no such file (add --size SIZE to create it)");
            }
            return;
        }
        long wanted = Sizes.parse(options.size);
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
    }

    String uri()
    {
        return running.uri();
    }

    /** Stops the frontend (letting requests in flight finish), then flushes and closes the device. */
    @Override
    public void close()
            throws IOException
    {
        IOException failure = null;
        while (!started.isEmpty()) {
            try {
                started.pop().close();
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
