package dev.jloop.nbd;

import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Export;
import dev.jloop.api.FrontendConfig;
import dev.jloop.iter.PagePool;
import org.junit.jupiter.api.AfterEach;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Starts an {@link NbdServer} on loopback TCP over fake devices, with its own page pool, and checks
 * after each test that closing the server gave every page back.
 */
abstract class AbstractNbdServerTest
{
    static final long DISK_SIZE = 8 << 20;

    final PagePool pagePool = new PagePool(256L << 20);
    final MemoryBlockDevice disk = new MemoryBlockDevice(DISK_SIZE, MemoryBlockDevice.allCapabilities());
    final MemoryBlockDevice readOnlyDisk = new MemoryBlockDevice(1 << 20, DeviceCapabilities.builder().readOnly(true).flush(true).logicalBlockSize(512).build());
    NbdServer server;

    void startServer(Map<String, String> options)
            throws IOException
    {
        startServer(options, List.of(
                new Export("disk", "a writable disk", disk),
                new Export("ro", "a read-only disk", readOnlyDisk)));
    }

    void startServer(Map<String, String> options, List<Export> exports)
            throws IOException
    {
        server = NbdServer.start(NbdTestConfig.tcp(options), exports, pagePool);
    }

    SocketAddress address()
    {
        String uri = server.uri();
        int port = Integer.parseInt(uri.substring(uri.lastIndexOf(':') + 1, uri.indexOf('/', uri.indexOf("://") + 3)));
        return new InetSocketAddress("127.0.0.1", port);
    }

    @AfterEach
    void closeServer()
    {
        if (server != null) {
            server.close();
            assertEquals(0, pagePool.usedBytes(), "pages leaked");
            assertEquals(List.of(), Thread.getAllStackTraces().keySet().stream()
                    .map(Thread::getName)
                    .filter(name -> name.startsWith("nbd-"))
                    .toList(), "threads left running");
        }
        pagePool.close();
    }
}
