package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.iter.PagePool;
import dev.jloop.nbd.tls.NbdTls;
import dev.jloop.nbd.tls.TlsSettings;
import dev.jloop.uring.IoUring;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static dev.jloop.api.PluginOption.Type.COUNT;
import static dev.jloop.api.PluginOption.Type.DURATION;
import static dev.jloop.api.PluginOption.Type.PATH;
import static dev.jloop.api.PluginOption.Type.SIZE;
import static dev.jloop.api.PluginOption.Type.STRING;
import static java.util.Objects.requireNonNull;

/**
 * The options of the NBD frontend, declared in {@link #OPTIONS} (which {@code jloop serve} offers as
 * {@code --KEY}, with this help) and parsed and checked once when the server starts, so that a mistake
 * is one message at start and never a surprise later. Immutable: every connection reads the same
 * settings. Besides its options the frontend looks at systemd's {@code LISTEN_PID}/{@code LISTEN_FDS}:
 * when they name this process it serves on the socket it inherited (which {@code bin/jloop} moves
 * from descriptor 3 to 0) instead of binding one.
 */
public final class NbdSettings
{
    public static final String LISTEN = "listen";
    public static final String SOCKET = "socket";
    public static final String STDIO = "stdio";
    public static final String MAX_CONNECTIONS = "max-connections";
    public static final String HANDSHAKE_TIMEOUT = "handshake-timeout";
    public static final String REPLY_TIMEOUT = "reply-timeout";
    public static final String CLOSE_TIMEOUT = "close-timeout";
    public static final String MAX_INFLIGHT_BYTES = "max-inflight-bytes";
    public static final String MAX_INFLIGHT_REQUESTS = "max-inflight-requests";
    public static final String PAGE_POOL_BYTES = "page-pool-bytes";
    public static final String REGISTERED_BYTES = "registered-bytes";
    public static final String PAGE_POOL_IDLE = "page-pool-idle";
    public static final String NBD_LOOP = "nbd-loop";
    public static final String SPLICE_MIN = "splice-min";
    public static final String SPLICE_WRITE_MIN = "splice-write-min";
    public static final String NBD_RECV = "nbd-recv";
    public static final String BUSY_POLL = "busy-poll";
    public static final String TLS = "tls";
    public static final String TLS_CERTIFICATES = "tls-certificates";
    public static final String TLS_CERT = "tls-cert";
    public static final String TLS_KEY = "tls-key";
    public static final String TLS_CA = "tls-ca";
    public static final String TLS_VERIFY_PEER = "tls-verify-peer";
    public static final String TLS_ENGINE = "tls-engine";

    static final String DEFAULT_LISTEN = "127.0.0.1:10809";

    /** Every option of the NBD frontend, in the order {@code jloop serve --help} lists them. */
    static final List<PluginOption> OPTIONS = List.of(
            PluginOption.of(LISTEN, STRING, DEFAULT_LISTEN,
                    "TCP address to serve on; port 0 picks a free port, an empty host listens on every address", "--listen 0.0.0.0:10809"),
            PluginOption.of(SOCKET, PATH, null, "serve on this Unix socket instead of TCP", "--socket /tmp/nbd.sock"),
            PluginOption.flag(STDIO, "serve exactly one client on standard input/output (a socket pair, as libnbd's "
                    + "nbd_connect_command passes, or pipes) and exit when it leaves; log on stderr. Under socket activation "
                    + "(LISTEN_FDS, libnbd's [ ... ]): one client on the given socket", "nbdinfo -- [ jloop serve --stdio disk.img ]"),
            PluginOption.choice(TLS, List.of("off", "on", "require"), "off",
                    "TLS with X.509 certificates (NBD_OPT_STARTTLS): on lets clients choose, require refuses clients without TLS; "
                            + "PSK is not offered", "--tls require --tls-certificates /etc/pki/jloop"),
            PluginOption.of(TLS_CERTIFICATES, PATH, null,
                    "certificates in qemu's and nbdkit's layout: ca-cert.pem, server-cert.pem, server-key.pem", "--tls on --tls-certificates /etc/pki/jloop"),
            PluginOption.of(TLS_CERT, PATH, null, "server certificate (and chain), PEM; wins over --tls-certificates' own",
                    "--tls on --tls-cert server-cert.pem --tls-key server-key.pem"),
            PluginOption.of(TLS_KEY, PATH, null,
                    "server private key, PEM, unencrypted: PKCS#8, or PKCS#1 (RSA) / SEC1 (EC) as openssl and certtool write them",
                    "--tls-key server-key.pem"),
            PluginOption.of(TLS_CA, PATH, null,
                    "CA certificates, PEM, that client certificates must be signed by (default: ca-cert.pem of --tls-certificates)",
                    "--tls-verify-peer --tls-ca ca-cert.pem"),
            PluginOption.flag(TLS_VERIFY_PEER, "clients must present a certificate signed by the CA",
                    "--tls require --tls-certificates DIR --tls-verify-peer"),
            PluginOption.choice(TLS_ENGINE, List.of("auto", "boringssl", "jdk"), "auto",
                    "the TLS implementation: boringssl (built in, AES on the processor's vector instructions, about twice the JDK's "
                            + "speed per byte) or the JDK's own; auto takes boringssl where its native library loads (Linux on x86-64 "
                            + "and ARM64)", "--tls require --tls-certificates DIR --tls-engine jdk"),
            PluginOption.of(MAX_CONNECTIONS, COUNT, "0", "clients served at once, 0 for no limit; more are closed at once, with a log line",
                    "--max-connections 4"),
            PluginOption.of(HANDSHAKE_TIMEOUT, DURATION, "10",
                    "drop a client that has not finished the handshake (TLS included) within this time, like qemu-nbd's "
                            + "--handshake-limit; 0 waits for ever", "--handshake-timeout 30"),
            PluginOption.of(REPLY_TIMEOUT, DURATION, "60",
                    "close the connection of a client that has stopped reading its replies for this long, so that the memory "
                            + "its requests hold comes back for the other clients; 0 waits for ever", "--reply-timeout 300"),
            PluginOption.of(CLOSE_TIMEOUT, DURATION, "30",
                    "on stop, how long requests in flight and their replies may take before the connections of clients that "
                            + "do not read are closed", "--close-timeout 5"),
            PluginOption.of(MAX_INFLIGHT_BYTES, SIZE, "32M",
                    "payload bytes one connection may have in flight; a client that stops reading replies gets no new "
                            + "requests served beyond this", "--max-inflight-bytes 256M"),
            PluginOption.of(MAX_INFLIGHT_REQUESTS, COUNT, "256", "requests one connection may have in flight", "--max-inflight-requests 512"),
            PluginOption.of(PAGE_POOL_BYTES, SIZE, "512M",
                    "memory for request payloads, shared by every connection; requests beyond it get ENOMEM, and no payload "
                            + "may be larger", "--page-pool-bytes 1G"),
            PluginOption.choice(NBD_LOOP, List.of("auto", "io_uring", "threads"), "auto",
                    "how a connection moves requests and replies: io_uring serves each plain (not TLS) connection on an io_uring "
                            + "event loop, its receive and send on the ring and no thread hand-off per request; threads reads on "
                            + "the connection's thread and writes replies on a second one; auto is io_uring where it works",
                    "--nbd-loop threads"),
            PluginOption.choice(NBD_RECV, List.of("single", "multishot", "auto"), "single",
                    "how the io_uring loop receives requests: single posts a receive whenever the loop needs bytes; "
                            + "multishot keeps one receive armed on the socket that the kernel fills into a small ring of "
                            + "provided buffers (Linux 6.0+; slower for 4 KiB reads at 32 in flight, so not the default); "
                            + "auto is multishot where the kernel has it",
                    "--nbd-recv multishot"),
            PluginOption.of(BUSY_POLL, COUNT, "50",
                    "microseconds the io_uring loop of a client that sends one request (of 128 KiB at most) at a time watches for the next "
                            + "completion before it sleeps, like the kernel's net.core.busy_poll: such a client is answered "
                            + "sooner, for CPU spent watching, where a core is free for it: each connection measures whether it is, and polls "
                            + "only then; never over a --direct file; at most one loop fewer than there are CPUs polls at once; 0: never",
                    "--busy-poll 0"),
            PluginOption.of(PAGE_POOL_IDLE, DURATION, "10",
                    "page-pool memory goes back to the system once the server has had no request for between this long "
                            + "and twice this long (a fresh server holds none); 0 keeps it", "--page-pool-idle 60"),
            PluginOption.of(REGISTERED_BYTES, SIZE, "0",
                    "how much of the page pool is carved at start and offered to the devices to pin (io_uring fixed "
                            + "buffers); pinned memory stays resident even when idle, and fixed buffers read no faster than "
                            + "plain ones on this path, so none by default", "--registered-bytes 64M"),
            PluginOption.of(SPLICE_MIN, SIZE, "128K",
                    "READs of at least this many bytes on the io_uring loop over an io_uring file (buffered, no filter) "
                            + "go from the file to the socket by splice, without copying the data through jloop; 0: never",
                    "--splice-min 256K"),
            PluginOption.of(SPLICE_WRITE_MIN, SIZE, "0",
                    "WRITEs of at least this many bytes on the io_uring loop over an io_uring file (buffered, no filter, "
                            + "single-shot receive) go from the socket into the file by splice, without copying the payload "
                            + "through jloop's pages: less CPU per byte, but fewer large WRITEs in flight, so off (0) by default",
                    "--splice-write-min 512K"));

    private final String host;
    private final int port;
    private final Path socket;
    private final boolean privateSocket;
    private final boolean stdio;
    private final boolean socketActivation;
    private final int maxConnections;
    private final long handshakeTimeoutMillis;
    private final long replyTimeoutMillis;
    private final long closeTimeoutMillis;
    private final int maxInflightBytes;
    private final int maxInflightRequests;
    private final long pagePoolBytes;
    private final long registeredBytes;
    private final long pagePoolIdleMillis;
    private final TlsSettings tls;
    private final boolean uringLoop;
    private final long spliceMin;
    private final long spliceWriteMin;
    private final boolean multishotReceive;
    private final long busyPollMicros;

    private NbdSettings(FrontendConfig config, Map<String, String> environment)
    {
        PluginOptions options = PluginOptions.parse("the nbd frontend", OPTIONS, config.options());
        boolean addressGiven = config.options().containsKey(LISTEN) || config.options().containsKey(SOCKET);
        this.stdio = options.flag(STDIO);
        this.socketActivation = socketActivated(environment);
        if (config.options().containsKey(LISTEN) && config.options().containsKey(SOCKET)) {
            throw new IllegalArgumentException("--socket and --listen exclude each other: serve on a Unix socket or on TCP");
        }
        if (stdio && addressGiven) {
            throw new IllegalArgumentException("--stdio serves on standard input/output: drop --socket and --listen");
        }
        if (stdio && config.privateEndpoint()) {
            throw new IllegalArgumentException("--stdio and --run exclude each other: --stdio serves the client that started jloop");
        }
        if (socketActivation && (addressGiven || config.privateEndpoint())) {
            throw new IllegalArgumentException("started by socket activation (LISTEN_FDS): it gives the socket, so --socket, --listen and --run do not apply");
        }
        Listen listen = Listen.parse(options.string(LISTEN));
        this.host = listen.host();
        this.port = listen.port();
        this.socket = options.path(SOCKET);
        this.privateSocket = config.privateEndpoint() && !addressGiven;
        this.maxConnections = options.count(MAX_CONNECTIONS, 0);
        this.handshakeTimeoutMillis = options.millis(HANDSHAKE_TIMEOUT, 0);
        this.replyTimeoutMillis = options.millis(REPLY_TIMEOUT, 0);
        this.closeTimeoutMillis = positive(CLOSE_TIMEOUT, options.millis(CLOSE_TIMEOUT, 0));
        // a budget beyond an int is the largest int, never a negative one
        this.maxInflightBytes = (int) Math.min(Integer.MAX_VALUE, positive(MAX_INFLIGHT_BYTES, options.size(MAX_INFLIGHT_BYTES, 0)));
        this.maxInflightRequests = (int) positive(MAX_INFLIGHT_REQUESTS, options.count(MAX_INFLIGHT_REQUESTS, 0));
        this.pagePoolBytes = positive(PAGE_POOL_BYTES, options.size(PAGE_POOL_BYTES, 0));
        this.registeredBytes = options.size(REGISTERED_BYTES, 0);
        this.pagePoolIdleMillis = options.millis(PAGE_POOL_IDLE, 0);
        this.tls = parseTls(options);
        this.uringLoop = parseLoop(options.string(NBD_LOOP));
        this.spliceMin = options.size(SPLICE_MIN, 0);
        this.spliceWriteMin = options.size(SPLICE_WRITE_MIN, 0);
        this.multishotReceive = uringLoop && parseReceive(options.string(NBD_RECV));
        this.busyPollMicros = options.count(BUSY_POLL, 0);
    }

    /** Parses and checks {@code config}'s options; throws {@link IllegalArgumentException} with the reason for the first mistake. */
    static NbdSettings from(FrontendConfig config, Map<String, String> environment)
    {
        return new NbdSettings(requireNonNull(config, "config is null"), requireNonNull(environment, "environment is null"));
    }

    /** {@code options} for any client, in a process that was not socket-activated. */
    static NbdSettings fromOptions(Map<String, String> options)
    {
        return from(FrontendConfig.of(options), Map.of());
    }

    String host()
    {
        return host;
    }

    /** 0: a free one. */
    int port()
    {
        return port;
    }

    /** The Unix socket to serve on, or {@code null} for TCP (or a private socket). */
    Path socket()
    {
        return socket;
    }

    /** Whether to serve on a Unix socket in a new private directory (for {@code --run}). */
    boolean privateSocket()
    {
        return privateSocket;
    }

    boolean stdio()
    {
        return stdio;
    }

    boolean socketActivation()
    {
        return socketActivation;
    }

    /** 0: no limit. */
    int maxConnections()
    {
        return maxConnections;
    }

    /** 0: no limit. */
    long handshakeTimeoutMillis()
    {
        return handshakeTimeoutMillis;
    }

    /** 0: no limit. */
    long replyTimeoutMillis()
    {
        return replyTimeoutMillis;
    }

    long closeTimeoutMillis()
    {
        return closeTimeoutMillis;
    }

    /** Whether plain connections are served by the io_uring loop ({@link NbdUringLoop}) rather than threads. */
    boolean uringLoop()
    {
        return uringLoop;
    }

    private static boolean parseLoop(String loop)
    {
        String cause = NbdUringLoop.unavailabilityCause();
        switch (loop) {
            case "threads":
                return false;
            case "io_uring":
                if (cause != null) {
                    throw new IllegalArgumentException("--" + NBD_LOOP + " io_uring: not available here: " + cause);
                }
                return true;
            default:
                return cause == null;
        }
    }

    /** Whether the io_uring loop receives with a multishot receive into provided buffers ({@link MultishotReceiver}). */
    boolean multishotReceive()
    {
        return multishotReceive;
    }

    private static boolean parseReceive(String receive)
    {
        String cause = IoUring.multishotReceiveUnavailabilityCause();
        switch (receive) {
            case "single":
                return false;
            case "multishot":
                if (cause != null) {
                    throw new IllegalArgumentException("--" + NBD_RECV + " multishot: not available here: " + cause);
                }
                return true;
            default:
                return cause == null;
        }
    }

    int maxInflightBytes()
    {
        return maxInflightBytes;
    }

    int maxInflightRequests()
    {
        return maxInflightRequests;
    }

    long pagePoolBytes()
    {
        return pagePoolBytes;
    }

    /** How much of the page pool is carved at start and offered to the devices to pin ({@link BlockDevice#registerMemory}). */
    long registeredBytes()
    {
        return registeredBytes;
    }

    /** How long the io_uring loop watches for a completion before it sleeps ({@link dev.jloop.uring.BusyPoll}); 0: it does not. */
    long busyPollNanos()
    {
        return busyPollMicros * 1000;
    }

    /** Smallest READ the io_uring loop splices from the file to the socket; 0 when none is. */
    long spliceMin()
    {
        return spliceMin;
    }

    /** Smallest WRITE the io_uring loop splices from the socket into the file; 0 when none is. */
    long spliceWriteMin()
    {
        return spliceWriteMin;
    }

    /** How often an idle page pool is trimmed ({@link PagePool#trimIfIdle}); 0: never. */
    long pagePoolIdleMillis()
    {
        return pagePoolIdleMillis;
    }

    TlsSettings tls()
    {
        return tls;
    }

    /** Whether systemd's LISTEN_PID and LISTEN_FDS name this process. */
    private static boolean socketActivated(Map<String, String> environment)
    {
        String pid = environment.get("LISTEN_PID");
        String fds = environment.get("LISTEN_FDS");
        return pid != null && fds != null && pid.trim().equals(Long.toString(ProcessHandle.current().pid()));
    }

    /**
     * The {@code tls*} options: the credentials come from {@code tls-cert} and {@code tls-key}, or
     * from the {@code tls-certificates} directory; a file given on its own wins over the directory's.
     */
    private static TlsSettings parseTls(PluginOptions options)
    {
        NbdTls.Mode mode = NbdTls.Mode.valueOf(options.string(TLS).toUpperCase(Locale.ROOT));
        boolean verifyPeer = options.flag(TLS_VERIFY_PEER);
        Path directory = options.path(TLS_CERTIFICATES);
        Path cert = options.path(TLS_CERT);
        Path key = options.path(TLS_KEY);
        Path ca = options.path(TLS_CA);
        NbdTls.Engine engine = NbdTls.Engine.valueOf(options.string(TLS_ENGINE).toUpperCase(Locale.ROOT));
        if (ca != null && !verifyPeer) {
            // the CA only checks client certificates: without verification it would be ignored
            throw new IllegalArgumentException("--tls-ca is the CA that client certificates are checked against, which only --tls-verify-peer does: "
                    + "add --tls-verify-peer, or drop --tls-ca");
        }
        if (mode == NbdTls.Mode.OFF) {
            if (directory != null || cert != null || key != null || verifyPeer || engine != NbdTls.Engine.AUTO) {
                throw new IllegalArgumentException("TLS certificates, peer verification or a TLS engine given, but --tls is off: add --tls on or --tls require");
            }
            return TlsSettings.OFF;
        }
        if (directory != null) {
            cert = cert != null ? cert : directory.resolve("server-cert.pem");
            key = key != null ? key : directory.resolve("server-key.pem");
            ca = ca != null ? ca : directory.resolve("ca-cert.pem");
        }
        if (cert == null || key == null) {
            throw new IllegalArgumentException("--tls " + mode.name().toLowerCase(Locale.ROOT)
                    + " needs a certificate and key: give --tls-cert and --tls-key, or a --tls-certificates directory");
        }
        if (verifyPeer && ca == null) {
            throw new IllegalArgumentException("--tls-verify-peer needs the CA that signs client certificates: give --tls-ca or --tls-certificates");
        }
        return new TlsSettings(mode, cert, key, verifyPeer ? ca : null, engine);
    }

    private static long positive(String key, long value)
    {
        if (value <= 0) {
            throw new IllegalArgumentException("--" + key + " must be more than 0");
        }
        return value;
    }

    /** A {@code HOST:PORT} as {@code --listen} takes it; IPv6 hosts in brackets. */
    record Listen(String host, int port)
    {
        static Listen parse(String text)
        {
            int colon = text.lastIndexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException("bad --listen '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:10809");
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
                throw new IllegalArgumentException("bad --listen '" + text + "': port must be a number from 0 to 65535");
            }
        }
    }
}
