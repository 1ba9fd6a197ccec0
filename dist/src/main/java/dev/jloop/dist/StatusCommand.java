package dev.jloop.dist;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code jloop status}: asks a running server over its control socket ({@link ControlSocket}) for its
 * exports, connections, rates and latencies, once or, with {@code --watch}, again and again in place,
 * as {@code top} does.
 */
@Command(name = "status", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = {
                "Shows a running jloop serve: its exports with requests, bytes, rates and p50/p99 latency per operation over the "
                        + "last 10 s, its connections with their clients and requests in flight, its page pool.",
                "",
                "Examples:",
                "  The one server running here (its socket under /run/jloop, $XDG_RUNTIME_DIR/jloop or the temporary directory):",
                "    jloop status",
                "  A server started with --control /tmp/jloop.sock, refreshed every second:",
                "    jloop status --control /tmp/jloop.sock --watch",
                ""})
final class StatusCommand
        implements Callable<Integer>
{
    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--control", paramLabel = "PATH", description = "the server's control socket, as given to serve's --control")
    Path control;

    @Option(names = "--pid", paramLabel = "PID", description = "the server with this process id (its socket PID.sock in the default places)")
    Long pid;

    @Option(names = "--watch", description = "refresh in place until interrupted (Ctrl-C)")
    boolean watch;

    @Option(names = "--interval", paramLabel = "SECONDS", defaultValue = "1", description = "seconds between refreshes with --watch (default: ${DEFAULT-VALUE})")
    double interval;

    @Override
    public Integer call()
            throws InterruptedException
    {
        PrintWriter out = spec.commandLine().getOut();
        Path socket = socket();
        while (true) {
            String report;
            try {
                report = ask(socket, ControlSocket.STATUS);
            }
            catch (IOException e) {
                throw new UserException("cannot reach the server at " + socket + ": " + e.getMessage(), e);
            }
            if (watch) {
                // home, clear the screen: the report replaces the last one, as top does
                out.print("\033[H\033[2J");
            }
            out.print(report);
            out.flush();
            if (!watch) {
                return 0;
            }
            Thread.sleep((long) (Math.max(0.1, interval) * 1000));
        }
    }

    private Path socket()
    {
        if (control != null) {
            return control;
        }
        List<Path> found = new ArrayList<>();
        for (Path directory : ControlSocket.directories()) {
            if (pid != null) {
                Path candidate = directory.resolve(pid + ".sock");
                if (Files.exists(candidate)) {
                    return candidate;
                }
                continue;
            }
            try (DirectoryStream<Path> sockets = Files.newDirectoryStream(directory, "*.sock")) {
                for (Path candidate : sockets) {
                    String name = candidate.getFileName().toString();
                    try {
                        long owner = Long.parseLong(name.substring(0, name.length() - ".sock".length()));
                        if (ProcessHandle.of(owner).isPresent()) {
                            found.add(candidate);
                        }
                    }
                    catch (NumberFormatException e) {
                        // not a server's socket
                    }
                }
            }
            catch (IOException e) {
                // no such directory, or not ours to read
            }
        }
        List<String> places = ControlSocket.directories().stream().map(Path::toString).toList();
        if (pid != null) {
            throw new UserException("no control socket of process " + pid + " in " + String.join(", ", places) + "; give it with --control PATH");
        }
        if (found.isEmpty()) {
            throw new UserException("no running jloop found in " + String.join(", ", places) + "; give its socket with --control PATH");
        }
        if (found.size() > 1) {
            throw new UserException("several jloop servers are running (" + String.join(", ", found.stream().map(Path::toString).toList())
                    + "); choose one with --pid PID or --control PATH");
        }
        return found.get(0);
    }

    /** Sends one command line and reads the answer to the end. */
    static String ask(Path socket, String command)
            throws IOException
    {
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            channel.connect(UnixDomainSocketAddress.of(socket));
            ByteBuffer request = ByteBuffer.wrap((command + "\n").getBytes(StandardCharsets.UTF_8));
            while (request.hasRemaining()) {
                channel.write(request);
            }
            ByteBuffer buffer = ByteBuffer.allocate(1 << 16);
            ByteArrayOutputStream answer = new ByteArrayOutputStream();
            while (channel.read(buffer.clear()) >= 0) {
                answer.write(buffer.array(), 0, buffer.position());
            }
            return answer.toString(StandardCharsets.UTF_8);
        }
    }
}
