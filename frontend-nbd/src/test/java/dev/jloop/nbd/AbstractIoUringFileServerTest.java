package dev.jloop.nbd;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.Export;
import dev.jloop.backend.iouring.IoUringBackendFactory;
import dev.jloop.backend.iouring.IoUringBackingFile;
import dev.jloop.loop.LoopDevice;
import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A server on the io_uring connection loop over a real io_uring file, whose I/O then goes on the
 * connection's ring: the file holds {@link #fileSize()} random bytes ({@link #content}) before each
 * test; {@link #serve} opens it as export "disk"; after each test no page or kiocb may be left.
 */
abstract class AbstractIoUringFileServerTest
        extends AbstractNbdServerTest
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    Path path;
    byte[] content;
    final AioKernel aio = new AioKernel();
    IoUringBackingFile file;
    LoopDevice device;

    /** Bytes of the file each test starts with. */
    abstract int fileSize();

    @BeforeEach
    void writeFile()
            throws IOException
    {
        CiAssumptions.assumeAvailable(NbdUringLoop.unavailabilityCause() == null, "io_uring connection loop: " + NbdUringLoop.unavailabilityCause());
        path = dir.resolve("disk");
        content = pattern(fileSize(), 17);
        Files.write(path, content);
    }

    @AfterEach
    void closeDevice()
            throws IOException
    {
        if (server != null) {
            server.close();
            assertEquals(0, pagePool.usedBytes(), "pages leaked");
            server = null;
        }
        if (device != null) {
            device.close();
            assertEquals(0, aio.allocated(), "kiocbs leaked");
        }
    }

    /** Serves the file ({@code O_DIRECT} if {@code direct}) on the io_uring loop with {@code options}. */
    void serve(boolean direct, Map<String, String> options)
            throws IOException
    {
        file = (IoUringBackingFile) new IoUringBackendFactory().open(new BackendConfig(path, false, direct, 64, Map.of()));
        device = new LoopDevice(file, aio, "disk");
        Map<String, String> withLoop = new HashMap<>(options);
        withLoop.put(NbdSettings.NBD_LOOP, "io_uring");
        startServer(withLoop, List.of(new Export("disk", "", device)));
    }

    static byte[] pattern(int length, int seed)
    {
        byte[] data = new byte[length];
        new Random(seed).nextBytes(data);
        return data;
    }
}
