package dev.jloop.dist;

import dev.jloop.loop.stats.ServerStats;
import dev.jloop.metrics.MetricsEndpoint;
import com.google.inject.AbstractModule;
import com.google.inject.multibindings.OptionalBinder;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;

import static java.util.Objects.requireNonNull;

/**
 * {@code --metrics HOST:PORT}: the Prometheus endpoint. Installed only when the option is given, so
 * that a server without it never loads the Prometheus client's classes.
 */
final class PrometheusModule
        extends AbstractModule
{
    private final InetSocketAddress address;

    PrometheusModule(String address)
    {
        this.address = parse(address);
    }

    @Override
    protected void configure()
    {
        OptionalBinder.newOptionalBinder(binder(), MetricsExporter.class).setBinding().toInstance(new Exporter(address));
    }

    /** {@code HOST:PORT}, {@code [IPV6]:PORT}, {@code :PORT} (every address) or {@code PORT} (loopback). */
    static InetSocketAddress parse(String text)
    {
        requireNonNull(text, "text is null");
        int colon = text.lastIndexOf(':');
        String host = colon < 0 ? "127.0.0.1" : text.substring(0, colon);
        String portText = text.substring(colon + 1);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(portText);
        }
        catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 0 || port > 65535) {
            throw new UserException("--metrics " + text + ": expected HOST:PORT, :PORT (every address) or PORT (loopback), e.g. --metrics 127.0.0.1:9100");
        }
        if (host.isEmpty()) {
            return new InetSocketAddress(port);
        }
        try {
            return new InetSocketAddress(InetAddress.getByName(host), port);
        }
        catch (UnknownHostException e) {
            throw new UserException("--metrics " + text + ": unknown host " + host, e);
        }
    }

    private record Exporter(InetSocketAddress address)
            implements MetricsExporter
    {
        @Override
        public Running start(ServerStats stats)
                throws IOException
        {
            MetricsEndpoint endpoint;
            try {
                endpoint = MetricsEndpoint.start(address, stats);
            }
            catch (IOException e) {
                throw new UserException("cannot serve --metrics on " + address + ": " + e.getMessage(), e);
            }
            return new Running()
            {
                @Override
                public String where()
                {
                    return endpoint.url();
                }

                @Override
                public void close()
                {
                    endpoint.close();
                }
            };
        }
    }
}
