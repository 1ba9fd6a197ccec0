package dev.jloop.dist;

import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;

/** The options of {@code jloop serve}, as picocli fills them in; checked by {@link JloopServer}. */
public final class ServeOptions
{
    @Option(names = "--frontend", paramLabel = "NAME", defaultValue = "nbd",
            description = "How the device is offered: nbd, or ublk for a kernel block device /dev/ublkbN (root, ublk_drv) (default: ${DEFAULT-VALUE}).")
    String frontend;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "How the file is accessed: auto, sync, nio, io_uring (default: ${DEFAULT-VALUE}; auto picks the fastest that works here).")
    String backend;

    @Option(names = "--listen", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:10809",
            description = "TCP address to serve on (default: ${DEFAULT-VALUE}). Port 0 picks a free port.")
    String listen;

    @Option(names = "--socket", paramLabel = "PATH",
            description = "Serve on this Unix socket instead of TCP.")
    Path socket;

    @Option(names = "--export", paramLabel = "NAME", defaultValue = "",
            description = "Export name clients ask for (default: the empty name).")
    String export;

    @Option(names = {"--read-only", "-r"},
            description = "Refuse writes, trims and zeroing (clients get EPERM).")
    boolean readOnly;

    @Option(names = "--direct",
            description = "Bypass the host page cache (O_DIRECT); unaligned requests are bounced.")
    boolean direct;

    @Option(names = "--size", paramLabel = "SIZE",
            description = "Create FILE sparse with this size if it is missing, or grow it (e.g. 1G, 512M).")
    String size;

    @Option(names = "--queue-depth", paramLabel = "N",
            description = "Operations in flight on the backing file at most (default: 64); with --frontend ublk also the depth of each ublk queue (default: 128).")
    Integer queueDepth;

    @Option(names = "--queues", paramLabel = "N",
            description = "ublk: hardware queues, each served by its own thread (default: 1).")
    Integer queues;

    @Option(names = "--ublk-id", paramLabel = "N",
            description = "ublk: the device number, giving /dev/ublkbN (default: the kernel picks a free one).")
    Integer ublkId;

    @Option(names = "--uring-sqpoll",
            description = "io_uring backend: let a kernel thread poll the submission queue (saves system calls, costs a core).")
    boolean uringSqpoll;

    @Parameters(index = "0", paramLabel = "FILE", description = "The disk image (or any file) to serve.")
    Path file;
}
