package dev.jloop.dist;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.AsynchronousCloseException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import static java.util.Objects.requireNonNull;

/**
 * The control socket {@code jloop status} talks to: a Unix socket, {@code /run/jloop/PID.sock} by
 * default (or under {@code $XDG_RUNTIME_DIR/jloop}, or the temporary directory, where {@code /run}
 * cannot be written), readable by the server's user only. A client sends one line, {@code status},
 * and gets the report; one thread serves clients one at a time, and samples the counters once a
 * second for the report's window.
 */
final class ControlSocket
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(ControlSocket.class);
    static final String STATUS = "status";

    private final Path path;
    private final ServerSocketChannel channel;
    private final StatusReport report;
    private final ScheduledExecutorService sampler;
    private final Thread thread;

    private ControlSocket(Path path, ServerSocketChannel channel, StatusReport report)
    {
        this.path = path;
        this.channel = channel;
        this.report = report;
        this.sampler = Executors.newSingleThreadScheduledExecutor(runnable -> {
            Thread sampling = new Thread(runnable, "jloop-status-sampler");
            sampling.setDaemon(true);
            return sampling;
        });
        sampler.scheduleAtFixedRate(report::sample, 1, 1, TimeUnit.SECONDS);
        this.thread = new Thread(this::serve, "jloop-control");
        thread.setDaemon(true);
        thread.start();
    }

    /** The directories a server's control socket may be in, the first that can be written used by default. */
    static List<Path> directories()
    {
        List<Path> directories = new ArrayList<>();
        directories.add(Path.of("/run/jloop"));
        String runtime = System.getenv("XDG_RUNTIME_DIR");
        if (runtime != null && !runtime.isEmpty()) {
            directories.add(Path.of(runtime, "jloop"));
        }
        directories.add(Path.of(System.getProperty("java.io.tmpdir"), "jloop-" + System.getProperty("user.name")));
        return directories;
    }

    /** Opens the control socket at {@code path}, or at the default path when {@code null}. */
    static ControlSocket open(Path path, StatusReport report)
            throws IOException
    {
        requireNonNull(report, "report is null");
        if (path != null) {
            return new ControlSocket(path, bind(path), report);
        }
        IOException failure = null;
        for (Path directory : directories()) {
            Path candidate = directory.resolve(ProcessHandle.current().pid() + ".sock");
            try {
                Files.createDirectories(directory);
                return new ControlSocket(candidate, bind(candidate), report);
            }
            catch (IOException e) {
                if (failure == null) {
                    failure = e;
                }
                else {
                    failure.addSuppressed(e);
                }
            }
        }
        throw failure;
    }

    private static ServerSocketChannel bind(Path path)
            throws IOException
    {
        // A socket file left by a server that is gone (pid reused, or --control given again) is replaced.
        if (Files.exists(path) && !answers(path)) {
            Files.delete(path);
        }
        ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            channel.bind(UnixDomainSocketAddress.of(path));
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        }
        catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
        return channel;
    }

    private static boolean answers(Path path)
    {
        try (SocketChannel ignored = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
            return true;
        }
        catch (IOException e) {
            return false;
        }
    }

    Path path()
    {
        return path;
    }

    private void serve()
    {
        while (true) {
            try (SocketChannel client = channel.accept()) {
                String command = readLine(client);
                String answer = STATUS.equals(command) ? report.render() : "jloop: unknown command '" + command + "'; known: " + STATUS + "\n";
                ByteBuffer bytes = ByteBuffer.wrap(answer.getBytes(StandardCharsets.UTF_8));
                while (bytes.hasRemaining()) {
                    client.write(bytes);
                }
            }
            catch (AsynchronousCloseException e) {
                return;
            }
            catch (IOException | RuntimeException e) {
                if (!channel.isOpen()) {
                    return;
                }
                log.debug("control socket client: {}", e.toString());
            }
        }
    }

    /** One command line, at most 256 bytes. */
    private static String readLine(SocketChannel client)
            throws IOException
    {
        ByteBuffer line = ByteBuffer.allocate(256);
        while (line.hasRemaining()) {
            if (client.read(line) < 0) {
                break;
            }
            if (line.position() > 0 && line.get(line.position() - 1) == '\n') {
                break;
            }
        }
        return new String(line.array(), 0, line.position(), StandardCharsets.UTF_8).trim();
    }

    @Override
    public void close()
            throws IOException
    {
        sampler.shutdownNow();
        try {
            channel.close();
        }
        finally {
            Files.deleteIfExists(path);
        }
    }
}
