package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.FrontendConfig;
import dev.jloop.nbd.tls.NbdTls;
import dev.jloop.nbd.tls.TlsSettings;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static java.util.Objects.requireNonNull;

/**
 * The options of the NBD frontend ({@link FrontendConfig#options()}), parsed and checked once when
 * the server starts, so that a mistake is one message at start and never a surprise later; unknown
 * keys are refused, naming the known ones. Immutable: every connection reads the same settings.
 *
 * <p>Sizes take a K, M or G suffix (powers of 1024):
 * <ul>
 * <li>{@code max-inflight-bytes} (default 128M): payload bytes one connection may have in flight,
 *     from page allocation to the reply being written. A client that stops reading replies stops
 *     getting new requests served once it reaches this.
 * <li>{@code max-inflight-requests} (default 256): requests one connection may have in flight.
 * <li>{@code page-pool-bytes} (default 512M): capacity of the page pool the server creates (not
 *     used when a pool is given). Requests beyond it get ENOMEM, and the handshake advertises at
 *     most this as the largest payload. Clients that stop reading their replies can hold all pages
 *     until {@code reply-timeout-ms} drops them; other clients wait for pages meanwhile.
 * <li>{@code reply-timeout-ms} (default 60000, 0 = none): a connection whose replies have made no
 *     progress for this long (the client stopped reading them) is closed, giving its pages back,
 *     so a client that stops reading stalls only itself for longer than this. Replies go out at
 *     most 1 MiB per socket write, each counting as progress: slow readers are not dropped.
 * <li>{@code registered-bytes} (default 64M): how much of the server's page pool is carved at
 *     start and offered to the exports' devices to pin once ({@link BlockDevice#registerMemory},
 *     io_uring fixed buffers); pages beyond it work the same, unpinned.
 * <li>{@code close-timeout-ms} (default 30000): how long {@link NbdServer#close()} waits for in-flight
 *     requests and their replies before it closes the sockets of clients that do not read.
 * <li>{@code max-connections} (default 0, no limit): clients served at once; one more is closed as
 *     soon as it is accepted, with a log line, as nbdkit's limit filter does.
 * <li>{@code handshake-timeout-ms} (default 10000, 0 = none): a client that has not finished the
 *     handshake (TLS included) by then is dropped, so idle connections cannot pile up; as
 *     qemu-nbd's {@code --handshake-limit}.
 * <li>{@code stdio} (default false): serve exactly one client on the process's standard input and
 *     output (a socket, as {@code nbd_connect_command} passes, or a pair of pipes) instead of
 *     listening; {@link NbdServer#awaitEnd()} returns when it leaves. Host, port and socket are ignored.
 * <li>{@code socket-activation} (default false): serve on the listening socket the process
 *     inherited on standard input (systemd socket activation, {@code LISTEN_FDS}, which
 *     {@code bin/jloop} moves from descriptor 3 to 0) instead of binding one. With {@code stdio},
 *     exactly one client is accepted there and served.
 * <li>{@code tls} ({@code off}, {@code on} or {@code require}; default off): NBD_OPT_STARTTLS with
 *     X.509 certificates. Under {@code on} clients may also go on in clear text; under
 *     {@code require} every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD.
 *     PSK is not offered: JSSE has no TLS-PSK.
 * <li>{@code tls-cert}, {@code tls-key}: the server's certificate (chain) and private key, PEM; the
 *     key PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
 * <li>{@code tls-certificates}: a directory in qemu's and nbdkit's layout instead
 *     ({@code server-cert.pem}, {@code server-key.pem}, {@code ca-cert.pem}); a file given on its
 *     own wins over the directory's.
 * <li>{@code tls-verify-peer} (default false): clients must present a certificate signed by
 *     {@code tls-ca} (default: {@code ca-cert.pem} of {@code tls-certificates}).
 * <li>{@code tls-ca}: CA certificates, PEM, that client certificates are checked against.
 * </ul>
 */
public final class NbdSettings
{
    public static final String MAX_INFLIGHT_BYTES = "max-inflight-bytes";
    public static final String MAX_INFLIGHT_REQUESTS = "max-inflight-requests";
    public static final String PAGE_POOL_BYTES = "page-pool-bytes";
    public static final String CLOSE_TIMEOUT_MS = "close-timeout-ms";
    public static final String REGISTERED_BYTES = "registered-bytes";
    public static final String MAX_CONNECTIONS = "max-connections";
    public static final String HANDSHAKE_TIMEOUT_MS = "handshake-timeout-ms";
    public static final String REPLY_TIMEOUT_MS = "reply-timeout-ms";
    public static final String STDIO = "stdio";
    public static final String SOCKET_ACTIVATION = "socket-activation";
    public static final String TLS = "tls";
    public static final String TLS_CERT = "tls-cert";
    public static final String TLS_KEY = "tls-key";
    public static final String TLS_CA = "tls-ca";
    public static final String TLS_CERTIFICATES = "tls-certificates";
    public static final String TLS_VERIFY_PEER = "tls-verify-peer";
    private static final Set<String> OPTIONS = Set.of(MAX_INFLIGHT_BYTES, MAX_INFLIGHT_REQUESTS, PAGE_POOL_BYTES, CLOSE_TIMEOUT_MS, REGISTERED_BYTES,
            MAX_CONNECTIONS, HANDSHAKE_TIMEOUT_MS, REPLY_TIMEOUT_MS, STDIO, SOCKET_ACTIVATION, TLS, TLS_CERT, TLS_KEY, TLS_CA, TLS_CERTIFICATES, TLS_VERIFY_PEER);

    private final int maxInflightBytes;
    private final int maxInflightRequests;
    private final long pagePoolBytes;
    private final long registeredBytes;
    private final long closeTimeoutMillis;
    private final int maxConnections;
    private final long handshakeTimeoutMillis;
    private final long replyTimeoutMillis;
    private final boolean stdio;
    private final boolean socketActivation;
    private final TlsSettings tls;

    private NbdSettings(Map<String, String> options)
    {
        for (String key : options.keySet()) {
            if (!OPTIONS.contains(key)) {
                throw new IllegalArgumentException("unknown nbd option '" + key + "'; known options: " + new TreeSet<>(OPTIONS));
            }
        }
        this.maxInflightBytes = (int) Math.min(Integer.MAX_VALUE, parseSize(options, MAX_INFLIGHT_BYTES, 128L << 20));
        this.maxInflightRequests = (int) Math.min(Integer.MAX_VALUE, parseSize(options, MAX_INFLIGHT_REQUESTS, 256));
        this.pagePoolBytes = parseSize(options, PAGE_POOL_BYTES, 512L << 20);
        this.registeredBytes = parseSize(options, REGISTERED_BYTES, 64L << 20);
        this.closeTimeoutMillis = parseSize(options, CLOSE_TIMEOUT_MS, 30_000);
        this.maxConnections = (int) Math.min(Integer.MAX_VALUE, parseCount(options, MAX_CONNECTIONS, 0));
        this.handshakeTimeoutMillis = parseCount(options, HANDSHAKE_TIMEOUT_MS, 10_000);
        this.replyTimeoutMillis = parseCount(options, REPLY_TIMEOUT_MS, 60_000);
        this.stdio = Boolean.parseBoolean(options.getOrDefault(STDIO, "false"));
        this.socketActivation = Boolean.parseBoolean(options.getOrDefault(SOCKET_ACTIVATION, "false"));
        this.tls = parseTls(options);
    }

    /** Parses and checks {@code options}; throws {@link IllegalArgumentException} with the reason for the first mistake. */
    static NbdSettings fromOptions(Map<String, String> options)
    {
        return new NbdSettings(requireNonNull(options, "options is null"));
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

    long registeredBytes()
    {
        return registeredBytes;
    }

    long closeTimeoutMillis()
    {
        return closeTimeoutMillis;
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

    boolean stdio()
    {
        return stdio;
    }

    boolean socketActivation()
    {
        return socketActivation;
    }

    TlsSettings tls()
    {
        return tls;
    }

    /**
     * The {@code tls*} options: the credentials come from {@code tls-cert} and {@code tls-key}, or
     * from the {@code tls-certificates} directory; a file given on its own wins over the directory's.
     */
    private static TlsSettings parseTls(Map<String, String> options)
    {
        NbdTls.Mode mode = parseTlsMode(options.getOrDefault(TLS, "off"));
        boolean verifyPeer = parseBoolean(options, TLS_VERIFY_PEER);
        Path directory = path(options, TLS_CERTIFICATES);
        Path cert = path(options, TLS_CERT);
        Path key = path(options, TLS_KEY);
        Path ca = path(options, TLS_CA);
        if (ca != null && !verifyPeer) {
            // the CA only checks client certificates: without verification it would be ignored
            throw new IllegalArgumentException("tls-ca given without tls-verify-peer, which is what it is for: add tls-verify-peer");
        }
        if (directory != null) {
            cert = cert != null ? cert : directory.resolve("server-cert.pem");
            key = key != null ? key : directory.resolve("server-key.pem");
            ca = ca != null ? ca : directory.resolve("ca-cert.pem");
        }
        if (mode == NbdTls.Mode.OFF) {
            if (cert != null || key != null || verifyPeer) {
                throw new IllegalArgumentException("TLS certificates or peer verification given, but tls is off (use tls on or require)");
            }
            return TlsSettings.OFF;
        }
        if (cert == null || key == null) {
            throw new IllegalArgumentException("tls " + mode.name().toLowerCase(Locale.ROOT)
                    + " needs a certificate and key: give tls-cert and tls-key, or a tls-certificates directory");
        }
        if (verifyPeer && ca == null) {
            throw new IllegalArgumentException("tls-verify-peer needs the CA that signs client certificates: give tls-ca or tls-certificates");
        }
        return new TlsSettings(mode, cert, key, verifyPeer ? ca : null);
    }

    private static NbdTls.Mode parseTlsMode(String text)
    {
        switch (text.trim().toLowerCase(Locale.ROOT)) {
            case "off":
            case "false":
            case "no":
                return NbdTls.Mode.OFF;
            case "on":
            case "true":
            case "yes":
                return NbdTls.Mode.ON;
            case "require":
                return NbdTls.Mode.REQUIRE;
            default:
                throw new IllegalArgumentException("nbd option tls must be off, on or require: " + text);
        }
    }

    private static long parseSize(Map<String, String> options, String key, long defaultValue)
    {
        String value = options.get(key);
        if (value == null) {
            return defaultValue;
        }
        String text = value.trim().toUpperCase(Locale.ROOT);
        long multiplier = 1;
        if (text.endsWith("K")) {
            multiplier = 1L << 10;
        }
        else if (text.endsWith("M")) {
            multiplier = 1L << 20;
        }
        else if (text.endsWith("G")) {
            multiplier = 1L << 30;
        }
        if (multiplier != 1) {
            text = text.substring(0, text.length() - 1);
        }
        try {
            long number = Long.parseLong(text);
            if (number <= 0) {
                throw new IllegalArgumentException("nbd option " + key + " must be positive: " + value);
            }
            return Math.multiplyExact(number, multiplier);
        }
        catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("nbd option " + key + " is not a size: " + value);
        }
    }

    /** A count or time; 0 allowed (meaning "no limit" where the option says so). */
    private static long parseCount(Map<String, String> options, String key, long defaultValue)
    {
        String value = options.get(key);
        if (value == null) {
            return defaultValue;
        }
        try {
            long number = Long.parseLong(value.trim());
            if (number < 0) {
                throw new IllegalArgumentException("nbd option " + key + " must not be negative: " + value);
            }
            return number;
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException("nbd option " + key + " is not a number: " + value);
        }
    }

    private static boolean parseBoolean(Map<String, String> options, String key)
    {
        String value = options.getOrDefault(key, "false").trim().toLowerCase(Locale.ROOT);
        switch (value) {
            case "true":
            case "on":
            case "yes":
                return true;
            case "false":
            case "off":
            case "no":
                return false;
            default:
                throw new IllegalArgumentException("nbd option " + key + " must be true or false: " + value);
        }
    }

    private static Path path(Map<String, String> options, String key)
    {
        String value = options.get(key);
        return value == null || value.isEmpty() ? null : Path.of(value);
    }
}
