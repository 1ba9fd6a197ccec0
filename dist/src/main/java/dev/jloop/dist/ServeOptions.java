package dev.jloop.dist;

import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The options of {@code jloop serve}, as picocli fills them in; checked by {@link JloopServer}. */
public final class ServeOptions
{
    static final String DEFAULT_LISTEN = "127.0.0.1:10809";

    @Option(names = "--frontend", paramLabel = "NAME", defaultValue = "nbd",
            description = "How the device is offered: nbd, or ublk for a kernel block device /dev/ublkbN (root, ublk_drv) (default: ${DEFAULT-VALUE}).%n  e.g. --frontend ublk disk.img")
    String frontend;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "How the file is accessed: auto, sync, nio, io_uring (default: ${DEFAULT-VALUE}; auto picks the fastest that works here).%n  e.g. --backend io_uring")
    String backend;

    @Option(names = "--listen", paramLabel = "HOST:PORT",
            description = "TCP address to serve on (default: " + DEFAULT_LISTEN + "). Port 0 picks a free port; an empty host listens on every address.%n  e.g. --listen 0.0.0.0:10809")
    String listen;

    @Option(names = "--socket", paramLabel = "PATH",
            description = "Serve on this Unix socket instead of TCP.%n  e.g. --socket /tmp/nbd.sock")
    Path socket;

    @Option(names = "--export", paramLabel = "NAME[=FILE[,OPT...]]",
            description = {"Without '=': the name of the export FILE (default: the empty name). "
                    + "With '=': one more export, NAME=FILE[,size=SIZE][,read-only][,description=TEXT]; repeat for several "
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




    @Option(names = "--tls", paramLabel = "off|on|require", defaultValue = "off",
            description = "TLS with X.509 certificates (NBD_OPT_STARTTLS): off (default), on (clients choose), require (clients "
                    + "without TLS are refused). PSK is not offered: Java's TLS has none.%n  e.g. --tls require --tls-certificates /etc/pki/jloop")
    String tls;

    @Option(names = "--tls-certificates", paramLabel = "DIR",
            description = "Certificates in qemu's and nbdkit's layout: ca-cert.pem, server-cert.pem, server-key.pem.%n  e.g. --tls on --tls-certificates /etc/pki/jloop")
    Path tlsCertificates;

    @Option(names = "--tls-cert", paramLabel = "FILE",
            description = "Server certificate (and chain), PEM.%n  e.g. --tls on --tls-cert server-cert.pem --tls-key server-key.pem")
    Path tlsCert;

    @Option(names = "--tls-key", paramLabel = "FILE",
            description = "Server private key, PEM, unencrypted: PKCS#8, or PKCS#1 (RSA) / SEC1 (EC) as openssl and certtool write them.%n  e.g. --tls-key server-key.pem")
    Path tlsKey;

    @Option(names = "--tls-ca", paramLabel = "FILE",
            description = "CA certificates, PEM, that client certificates must be signed by (default: ca-cert.pem of --tls-certificates).%n  e.g. --tls-verify-peer --tls-ca ca-cert.pem")
    Path tlsCa;

    @Option(names = "--tls-verify-peer",
            description = "Clients must present a certificate signed by the CA.%n  e.g. --tls require --tls-certificates DIR --tls-verify-peer")
    boolean tlsVerifyPeer;

    @Option(names = "--max-connections", paramLabel = "N", defaultValue = "0",
            description = "Clients served at once; more are closed at once, with a log line (default: 0, no limit).%n  e.g. --max-connections 4")
    int maxConnections;

    static final int DEFAULT_HANDSHAKE_TIMEOUT = 10;

    // null when not given, so that --frontend ublk can refuse it rather than ignore it
    @Option(names = "--handshake-timeout", paramLabel = "SECONDS",
            description = "Drop a client that has not finished the handshake (TLS included) within this time, like qemu-nbd's "
                    + "--handshake-limit (default: " + DEFAULT_HANDSHAKE_TIMEOUT + "; 0 = wait for ever).%n  e.g. --handshake-timeout 30")
    Integer handshakeTimeout;

    static final int DEFAULT_REPLY_TIMEOUT = 60;

    @Option(names = "--reply-timeout", paramLabel = "SECONDS",
            description = "Close the connection of a client that has stopped reading its replies for this long, so that the "
                    + "memory its requests hold comes back for the other clients (default: " + DEFAULT_REPLY_TIMEOUT
                    + "; 0 = wait for ever).%n  e.g. --reply-timeout 300")
    Integer replyTimeout;

    @Option(names = "--run", paramLabel = "COMMAND",
            description = "Start the server, run 'sh -c COMMAND' with $uri, $unixsocket (or $port), $exportname and $tls set, "
                    + "then stop the server and exit with the command's status. Serves on a private Unix socket unless "
                    + "--socket or --listen is given.%n  e.g. --run 'nbdcopy \"$uri\" copy.img' disk.img")
    String run;

    @Option(names = "--stdio",
            description = "Serve exactly one client on standard input/output (a socket pair, as libnbd's nbd_connect_command "
                    + "passes, or pipes) and exit when it leaves; log on stderr. Under socket activation (LISTEN_FDS, libnbd's "
                    + "[ ... ]): one client on the given socket.%n  e.g. nbdinfo -- [ jloop serve --stdio disk.img ]")
    boolean stdio;

    @Parameters(index = "0", arity = "0..1", paramLabel = "FILE",
            description = "The disk image (or any file) to serve; optional when every export is given as --export NAME=FILE.")
    Path file;
}
