package dev.jloop.nbd;

import dev.jloop.nbd.tls.NbdTls;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * The socket a server accepts its clients on, and the URI they reach it by: a TCP address, a Unix
 * socket (a stale socket file left by a server that died is removed first, and the file is deleted
 * again at the end), or the listening socket inherited for socket activation. The inherited one is
 * never closed: closing it points stdin, stdout and stderr at /dev/null
 * (sun.nio.ch.InheritedChannel), and the activator owns its file anyway.
 *
 * <p>Accepted on the server's accept thread, closed by the thread that closes the server.
 */
final class NbdListener
{
    private static final Logger log = LoggerFactory.getLogger(NbdListener.class);

    private final ServerSocketChannel channel;
    private final Path socketPath;
    private final Path privateDirectory;
    private final boolean unixSocket;
    private final boolean inherited;
    private final String uri;

    private NbdListener(ServerSocketChannel channel, Path socketPath, Path privateDirectory, boolean unixSocket, boolean inherited, String uri)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.socketPath = socketPath;
        this.privateDirectory = privateDirectory;
        this.unixSocket = unixSocket;
        this.inherited = inherited;
        this.uri = requireNonNull(uri, "uri is null");
    }

    /**
     * Listens where {@code settings} say: on the inherited socket under socket activation, a Unix
     * socket, a private one, or TCP; {@code export} is the export the URI names.
     */
    static NbdListener open(NbdSettings settings, String export)
            throws IOException
    {
        // libnbd's URIs: nbds:// when the client must use TLS
        String scheme = settings.tls().mode() == NbdTls.Mode.REQUIRE ? "nbds" : "nbd";
        if (settings.socketActivation()) {
            Channel inherited = System.inheritedChannel();
            if (!(inherited instanceof ServerSocketChannel)) {
                throw new IOException("socket activation: standard input is not the listening socket (" + inherited
                        + "); start jloop through bin/jloop, which moves LISTEN_FDS' descriptor 3 there");
            }
            ServerSocketChannel channel = (ServerSocketChannel) inherited;
            channel.configureBlocking(true);
            SocketAddress address = channel.getLocalAddress();
            if (address instanceof UnixDomainSocketAddress) {
                String path = ((UnixDomainSocketAddress) address).getPath().toString();
                // The activator made the socket and removes it: not ours to delete.
                return new NbdListener(channel, null, null, true, true, unixUri(scheme, export, path));
            }
            InetSocketAddress inet = (InetSocketAddress) address;
            return new NbdListener(channel, null, null, false, true, tcpUri(scheme, inet.getAddress().getHostAddress(), inet.getPort(), export));
        }
        if (settings.privateSocket()) {
            // createTempDirectory makes it mode 0700: only this user can reach the socket.
            Path directory = Files.createTempDirectory("jloop-run-");
            try {
                return unix(directory.resolve("nbd.sock"), directory, scheme, export);
            }
            catch (IOException e) {
                Files.deleteIfExists(directory);
                throw e;
            }
        }
        if (settings.socket() != null) {
            Path path = settings.socket().toAbsolutePath();
            removeStaleSocket(path);
            return unix(path, null, scheme, export);
        }
        ServerSocketChannel channel = ServerSocketChannel.open();
        try {
            channel.setOption(StandardSocketOptions.SO_REUSEADDR, true);
            channel.bind(new InetSocketAddress(settings.host(), settings.port()));
        }
        catch (IOException e) {
            channel.close();
            String hint = e instanceof BindException ? " (is another NBD server running? pick another port with --listen)" : "";
            throw new IOException("cannot listen on " + settings.host() + ":" + settings.port() + ": " + e.getMessage() + hint, e);
        }
        int port = ((InetSocketAddress) channel.getLocalAddress()).getPort();
        return new NbdListener(channel, null, null, false, false, tcpUri(scheme, settings.host(), port, export));
    }

    private static NbdListener unix(Path path, Path privateDirectory, String scheme, String export)
            throws IOException
    {
        ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            channel.bind(UnixDomainSocketAddress.of(path));
        }
        catch (IOException e) {
            channel.close();
            throw new IOException("cannot listen on Unix socket " + path + ": " + e.getMessage(), e);
        }
        return new NbdListener(channel, path, privateDirectory, true, false, unixUri(scheme, export, path.toString()));
    }

    /** {@code unixsocket} and its path, or {@code port} and its number, as nbdkit's {@code --run} sets them. */
    Map<String, String> address()
    {
        SocketAddress address;
        try {
            address = channel.getLocalAddress();
        }
        catch (IOException e) {
            // closed: nothing to reach any more
            return Map.of();
        }
        if (address instanceof UnixDomainSocketAddress unix) {
            return Map.of("unixsocket", unix.getPath().toAbsolutePath().toString());
        }
        return Map.of("port", Integer.toString(((InetSocketAddress) address).getPort()));
    }

    String uri()
    {
        return uri;
    }

    /** The next client; blocks. Throws {@link java.nio.channels.ClosedChannelException} once closed. */
    SocketChannel accept()
            throws IOException
    {
        return channel.accept();
    }

    /** Sets up an accepted connection (TCP_NODELAY on TCP: replies are not held back) and names its peer for the log. */
    String prepare(SocketChannel client)
            throws IOException
    {
        if (!unixSocket) {
            client.setOption(StandardSocketOptions.TCP_NODELAY, true);
            return String.valueOf(client.getRemoteAddress());
        }
        return "unix:" + (socketPath != null ? socketPath : client.getLocalAddress());
    }

    /** Stops accepting: closes the socket unless it is inherited. Returns whether {@link #accept} now fails. */
    boolean close()
    {
        if (inherited) {
            return false;
        }
        try {
            channel.close();
        }
        catch (IOException e) {
            log.warn("closing the listening socket failed: {}", e.toString());
        }
        return true;
    }

    /** Deletes the socket file this listener made (and its private directory), once its connections have ended. */
    void deleteSocketFile()
    {
        if (socketPath == null) {
            return;
        }
        try {
            Files.deleteIfExists(socketPath);
            if (privateDirectory != null) {
                Files.deleteIfExists(privateDirectory);
            }
        }
        catch (IOException e) {
            log.warn("cannot remove socket {}: {}", socketPath, e.toString());
        }
    }

    private static String unixUri(String scheme, String export, String path)
    {
        return scheme + "+unix:///" + encode(export, false) + "?socket=" + encode(path, true);
    }

    private static String tcpUri(String scheme, String host, int port, String export)
    {
        return scheme + "://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port + "/" + encode(export, false);
    }

    /** A socket file left by a server that died is removed; a live one, or any other file, is an error. */
    private static void removeStaleSocket(Path path)
            throws IOException
    {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        }
        catch (NoSuchFileException e) {
            return;
        }
        if (!attributes.isOther()) {
            throw new IOException("cannot listen on " + path + ": it exists and is not a socket");
        }
        try (SocketChannel probe = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
            throw new IOException("cannot listen on " + path + ": another server is listening there");
        }
        catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("cannot listen on")) {
                throw e;
            }
            Files.deleteIfExists(path);
        }
    }

    /** Percent-encodes all but RFC 3986 unreserved characters (and '/' where {@code keepSlash}). */
    static String encode(String text, boolean keepSlash)
    {
        StringBuilder out = new StringBuilder();
        for (byte b : text.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '.' || c == '_' || c == '~' || (keepSlash && c == '/')) {
                out.append((char) c);
            }
            else {
                out.append('%').append(String.format("%02X", c));
            }
        }
        return out.toString();
    }
}
