package dev.jloop.dist;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendStatus;
import dev.jloop.api.Sizes;
import dev.jloop.api.StillServingException;
import dev.jloop.loop.LoopDevice;
import dev.jloop.loop.stats.ExportStats;
import dev.jloop.loop.stats.ServerStats;
import jakarta.inject.Inject;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static java.util.Objects.requireNonNull;

/**
 * One running {@code jloop serve}: for each export a backing file and its loop device, then the
 * frontend serving them all; each registered with the {@link Lifecycle} as it starts, so that they
 * close in the reverse order.
 */
final class JloopServer
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(JloopServer.class);
    /**
     * As deep as a ublk queue by default (ublksrv's 128 too): fewer slots than the requests of a few
     * deep NBD connections send the rest through the loop device's worker and the file's own ring.
     */
    private static final int DEFAULT_QUEUE_DEPTH = 128;

    private final ServeOptions options;
    private final ChosenPlugins plugins;
    private final Map<String, FilterFactory> filters;
    private final Lifecycle lifecycle;
    private final Optional<MetricsExporter> metrics;
    private final List<ExportStats> exportStats = new ArrayList<>();
    private Frontend running;
    private ControlSocket control;

    @Inject
    JloopServer(ServeOptions options, ChosenPlugins plugins, Map<String, FilterFactory> filters, Lifecycle lifecycle, Optional<MetricsExporter> metrics)
    {
        this.metrics = requireNonNull(metrics, "metrics is null");
        this.options = requireNonNull(options, "options is null");
        this.plugins = requireNonNull(plugins, "plugins is null");
        this.filters = Map.copyOf(requireNonNull(filters, "filters is null"));
        this.lifecycle = requireNonNull(lifecycle, "lifecycle is null");
    }

    /**
     * Starts serving; returns the line that tells the user where. Under {@code --run} only the command
     * will use the frontend ({@link FrontendConfig#privateEndpoint()}).
     */
    String start()
    {
        // every export is checked before any file is created or opened
        List<ExportPlan> plans = new ArrayList<>();
        for (ExportSpec spec : exportSpecs()) {
            plans.add(ExportPlan.plan(spec, plugins, filters, options.readOnly, options.direct,
                    options.queueDepth != null ? options.queueDepth : DEFAULT_QUEUE_DEPTH));
        }
        List<Export> exports = new ArrayList<>();
        List<String> served = new ArrayList<>();
        try {
            for (ExportPlan plan : plans) {
                ExportSpec spec = plan.spec();
                BackendConfig config = plan.asked();
                Path file = spec.file();
                prepareFile(plan.open(), spec.size(), spec.file() == options.file ? "--size SIZE" : "size=SIZE to its --export");
                BackingFile backingFile = lifecycle.started(openBackingFile(plan.open()));
                // the last filter is closest to the backend: wrapped first
                for (int i = plan.filters().size() - 1; i >= 0; i--) {
                    backingFile = lifecycle.handOver(backingFile, wrap(plan.filters().get(i), backingFile, config));
                }
                LoopDevice device = lifecycle.handOver(backingFile, loopDevice(backingFile, config));
                long deviceSize = device.size();
                String description = spec.description() != null ? spec.description() : shortName(file) + " (" + Sizes.format(deviceSize) + ")";
                exports.add(new Export(spec.name(), description, device));
                exportStats.add(new ExportStats(spec.name(), file.toString(), plugins.backend().name(), plugins.frontend().name(), device));
                served.add(plans.size() == 1
                        ? file + ", " + Sizes.format(deviceSize)
                        : "'" + spec.name() + "' " + file + " " + Sizes.format(deviceSize) + (config.readOnly() ? " read-only" : ""));
            }
            running = lifecycle.started(createFrontend(plugins.frontendConfig().withOrigin(origin(plans)), exports));
            ServerStats stats = new Stats();
            if (metrics.isPresent()) {
                served.add("metrics " + lifecycle.started(metrics.get().start(stats)).where());
            }
            openControlSocket(stats);
        }
        catch (IOException e) {
            closeQuietly(e);
            throw new UncheckedIOException(e);
        }
        catch (RuntimeException e) {
            closeQuietly(e);
            throw e;
        }
        String filterNames = plugins.filters().isEmpty() ? "" : ", filters " + String.join(", ", plugins.filters().stream().map(filter -> filter.factory().name()).toList());
        return String.format("jloop: serving %s: %s, backend %s%s%s, frontend %s",
                running.uri(), String.join("; ", served), plugins.backend().name(), plugins.auto() ? " (auto)" : "", filterNames, plugins.frontend().name());
    }

    /** What the metrics and jloop status read: the exports served, and the frontend's status at the time. */
    private final class Stats
            implements ServerStats
    {
        @Override
        public List<ExportStats> exports()
        {
            return exportStats;
        }

        @Override
        public FrontendStatus frontend()
        {
            return running.status();
        }
    }

    /**
     * The socket jloop status talks to: at --control PATH (which must work), else at the default path,
     * where a failure only costs jloop status ({@code --control none}: no socket).
     */
    private void openControlSocket(ServerStats stats)
    {
        if ("none".equals(options.control)) {
            return;
        }
        StatusReport report = new StatusReport(stats, running.uri());
        try {
            control = lifecycle.started(ControlSocket.open(options.control == null ? null : Path.of(options.control), report));
            log.debug("control socket {}", control.path());
        }
        catch (IOException | RuntimeException e) {
            if (options.control != null) {
                throw new UserException("cannot open the control socket --control " + options.control + ": " + e.getMessage(), e);
            }
            log.warn("no control socket, jloop status will not find this server: {}", e.toString());
        }
    }

    /** How this server was started ({@link FrontendConfig#origin()}): enough for another process to serve the same again. */
    private Map<String, String> origin(List<ExportPlan> plans)
    {
        return Map.of(
                "arguments", String.join("\n", options.arguments),
                "directory", Path.of("").toAbsolutePath().toString(),
                "backend", plugins.backend().name(),
                "files", String.join("\n", plans.stream().map(plan -> plan.spec().file().toAbsolutePath().normalize().toString()).toList()));
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
            specs.add(0, new ExportSpec(names.isEmpty() ? "" : names.get(0), options.file, options.size, false, null, List.of(), Map.of()));
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

    /**
     * With a size: has the backend create the file, or grow it ({@link BackendFactory#create}); a
     * larger file is served whole. Without: the file must exist.
     */
    private void prepareFile(BackendConfig config, String sizeText, String howToSize)
    {
        Path file = config.path();
        if (!plugins.backend().targetsAreFiles()) {
            // an image of another system: the backend says whether it exists, and sizes it without shrinking
            if (sizeText != null) {
                try {
                    plugins.backend().create(config, ExportSpec.parseSize(sizeText));
                }
                catch (IOException e) {
                    throw new UserException("cannot create " + file + " with backend " + plugins.backend().name() + ": " + e.getMessage(), e);
                }
            }
            return;
        }
        if (sizeText == null) {
            if (!Files.exists(file)) {
                throw new UserException(file + ": no such file (add " + howToSize + " to create it)");
            }
            return;
        }
        long wanted = ExportSpec.parseSize(sizeText);
        try {
            long current = Files.exists(file) ? Files.size(file) : -1;
            if (current > wanted) {
                log.warn("{} is already {} bytes, larger than --size {}; serving it whole, nothing is truncated", file, current, wanted);
                return;
            }
            if (current < wanted) {
                plugins.backend().create(config, wanted);
            }
        }
        catch (IOException e) {
            throw new UserException("cannot create " + file + " with backend " + plugins.backend().name() + ": " + e.getMessage(), e);
        }
    }

    private BackingFile openBackingFile(BackendConfig config)
    {
        try {
            return plugins.backend().open(config);
        }
        catch (IOException e) {
            throw new UserException("cannot open " + config.path() + " with backend " + plugins.backend().name() + ": " + e.getMessage(), e);
        }
    }

    private LoopDevice loopDevice(BackingFile file, BackendConfig config)
    {
        try {
            return new LoopDevice(file, new AioKernel(), shortName(config.path()));
        }
        catch (UncheckedIOException e) {
            throw new UserException("cannot serve " + config.path() + " with backend " + plugins.backend().name() + ": " + e.getCause().getMessage(), e);
        }
    }

    /** How logs and descriptions name a target: a file by its name, another backend's target whole ({@code pool/image}). */
    private String shortName(Path target)
    {
        return plugins.backend().targetsAreFiles() ? String.valueOf(target.getFileName()) : target.toString();
    }

    private BackingFile wrap(ChosenPlugins.Filter filter, BackingFile next, BackendConfig export)
    {
        try {
            return filter.factory().wrap(next, export, filter.options());
        }
        catch (IOException | IllegalArgumentException e) {
            throw new UserException("cannot open " + export.path() + " through the " + filter.factory().name() + " filter: " + e.getMessage(), e);
        }
    }

    private Frontend createFrontend(FrontendConfig config, List<Export> exports)
    {
        try {
            return plugins.frontend().create(config, exports);
        }
        catch (IOException e) {
            throw new UserException("cannot start the " + plugins.frontend().name() + " frontend: " + e.getMessage(), e);
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

    /** The variables the frontend gives a command that uses it ({@code --run}). */
    Map<String, String> environment()
    {
        return running.environment();
    }

    /** Whether the frontend serves on standard input/output, where then nothing else may be written. */
    boolean usesStandardStreams()
    {
        return running.usesStandardStreams();
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
        try {
            lifecycle.close();
        }
        catch (StillServingException e) {
            log.error("{}", e.getMessage());
            flushOpenDevices();
            throw new IOException(e.getMessage() + "; the files were flushed and stay open until jloop exits", e);
        }
    }

    /** What every device acknowledged becomes durable, while they stay open for a frontend that still serves. */
    private void flushOpenDevices()
    {
        for (Closeable closeable : lifecycle.open()) {
            if (closeable instanceof LoopDevice device && !device.capabilities().readOnly()) {
                try {
                    int error = device.flush(60, TimeUnit.SECONDS);
                    if (error != 0) {
                        log.error("flush failed: {}", Errno.name(error));
                    }
                }
                catch (TimeoutException e) {
                    log.error("flush did not finish within 60 s");
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
}
