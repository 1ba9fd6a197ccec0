package dev.jloop.dist;

import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The options of {@code jloop serve} that are jloop's own, as picocli fills them in; checked by
 * {@link JloopServer}. The options of the backends and frontends come from their declarations
 * ({@link PluginCli}).
 */
public final class ServeOptions
{
    @Option(names = "--frontend", paramLabel = "NAME[:KEY=VALUE,...]", defaultValue = "nbd",
            description = "How the device is offered: a frontend by name (default: ${DEFAULT-VALUE}), with its options after a colon "
                    + "or as --KEY below; jloop frontends lists them.%n  e.g. --frontend ublk disk.img")
    String frontend;

    @Option(names = "--backend", paramLabel = "NAME[:KEY=VALUE,...]", defaultValue = "auto",
            description = "How the file is accessed: auto (the fastest that works here; the default) or a backend by name, with its "
                    + "options after a colon or as --KEY below; jloop backends lists them.%n  e.g. --backend io_uring:uring-sqpoll")
    String backend;

    @Option(names = "--filter", paramLabel = "NAME[:KEY=VALUE,...]",
            description = "A layer between the frontend and the backend (copy-on-write, injected errors, delays...), with its "
                    + "options after a colon or as --KEY below; repeat for several, the first given closest to the frontend; "
                    + "jloop filters lists them.%n  e.g. --filter cow --filter delay:delay-read=10ms disk.img")
    List<String> filters = new ArrayList<>();

    @Option(names = "--export", paramLabel = "NAME[=FILE[,OPT...]]",
            description = {"Without '=': the name of the export FILE (default: the empty name). "
                    + "With '=': one more export, NAME=FILE[,size=SIZE][,read-only][,description=TEXT][,KEY=VALUE] with KEY=VALUE "
                    + "an option of the backend for this export only; repeat for several "
                    + "(write a comma in a file name or text as ,,). Clients list them with NBD_OPT_LIST; the first is also "
                    + "served under the empty name.",
                    "  e.g. --export disk disk.img",
                    "       --export 'iso=boot.iso,read-only,description=CD'"})
    List<String> exports = new ArrayList<>();

    @Option(names = {"--read-only", "-r"},
            description = "Refuse writes, trims and zeroing on every export (clients get EPERM).%n  e.g. -r disk.img")
    boolean readOnly;

    @Option(names = "--direct",
            description = "Bypass the host page cache (O_DIRECT); unaligned requests are bounced.%n  e.g. --direct disk.img")
    boolean direct;

    @Option(names = "--size", paramLabel = "SIZE",
            description = "Create FILE sparse with this size if it is missing, or grow it (e.g. 1G, 512M); never shrinks. Exports given as NAME=FILE take size=SIZE instead.%n  e.g. --size 1G disk.img")
    String size;

    @Option(names = "--queue-depth", paramLabel = "N",
            description = "Operations in flight on each backing file at most (default: 64); given to a frontend that takes it too (ublk: the depth of each queue).%n  e.g. --queue-depth 128")
    Integer queueDepth;

    @Option(names = "--metrics", paramLabel = "HOST:PORT",
            description = "Serve Prometheus metrics on http://HOST:PORT/metrics (off by default; PORT alone is 127.0.0.1:PORT, "
                    + ":PORT every address, port 0 a free one, shown in the start line).%n  e.g. --metrics 127.0.0.1:9110")
    String metrics;

    @Option(names = "--control", paramLabel = "PATH",
            description = "The control socket jloop status talks to (default: /run/jloop/PID.sock, or under $XDG_RUNTIME_DIR/jloop "
                    + "or the temporary directory where /run cannot be written; none: no socket).%n  e.g. --control /tmp/jloop.sock")
    String control;

    @Option(names = "--run", paramLabel = "COMMAND",
            description = "Start the server, run 'sh -c COMMAND' with the frontend's variables set (nbd: $uri, $unixsocket or $port, "
                    + "$exportname, $tls; ublk: $device), then stop the server and exit with the command's status. The nbd "
                    + "frontend serves on a private Unix socket unless --socket or --listen is given.%n"
                    + "  e.g. --run 'nbdcopy \"$uri\" copy.img' disk.img%n       --frontend ublk --run 'mkfs.ext4 -q $device' disk.img")
    String run;

    @Parameters(index = "0", arity = "0..1", paramLabel = "FILE",
            description = "The disk image (or any file) to serve; optional when every export is given as --export NAME=FILE.")
    Path file;

    /** The arguments of {@code jloop serve} as given, for a frontend that records how to serve again ({@code FrontendConfig.origin()}). */
    List<String> arguments = List.of();
}
