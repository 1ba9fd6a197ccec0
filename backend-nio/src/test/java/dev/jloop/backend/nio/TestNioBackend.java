package dev.jloop.backend.nio;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.IovecIter;
import dev.jloop.testkit.AbstractBackingFileTest;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Map;
import java.util.Random;
import java.util.ServiceLoader;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The conformance suite on the nio backend, through the page cache; and what only it does. */
public class TestNioBackend
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new NioBackendFactory();
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        return Capabilities.builder()
                .flush(true).trim(true).zero(true).extents(true).multiConn(true).cache(true)
                .threadModel(ThreadModel.PARALLEL)
                .queueDepth(queueDepth())
                .build();
    }

    @Override
    protected boolean plainFile()
    {
        return true;
    }

    @Test
    public void testFoundByServiceLoaderAndPreferredToSync()
    {
        BackendFactory nio = ServiceLoader.load(BackendFactory.class).stream()
                .map(ServiceLoader.Provider::get)
                .filter(f -> f.name().equals("nio"))
                .findFirst()
                .orElseThrow();
        assertTrue(nio.autoPriority() > 0);
    }

    @Test
    public void testCompletesOnAWorkerThread()
            throws IOException
    {
        try (BackingFile file = factory().open(BackendConfig.of(createFile("worker", randomBytes(new Random(20), BLOCK))))) {
            assertEquals(ThreadModel.PARALLEL, file.capabilities().threadModel());
            AtomicReference<Thread> completer = new AtomicReference<>();
            CompletableFuture<Long> done = new CompletableFuture<>();
            // owned by no AioKernel: the test submits it itself, straight to the file
            Kiocb kiocb = new Kiocb(null);
            IovecIter iter = IovecIter.of(Direction.DEST, new byte[100]);
            kiocb.initRw(Kiocb.Op.READ, file, iter, 10, 0).initCallback((k, res) -> {
                completer.set(Thread.currentThread());
                done.complete(res);
            }, null);
            kiocb.markSubmitted();
            assertEquals(Kiocb.QUEUED, file.readIter(kiocb));
            assertEquals(100, done.join());
            assertNotEquals(Thread.currentThread(), completer.get());
            assertTrue(completer.get().getName().startsWith("jloop-nio-"), completer.get().getName());
        }
    }

    @Test
    public void testCloseStopsTheWorkers()
            throws IOException
    {
        BackingFile file = factory().open(new BackendConfig(createFile("workers", randomBytes(new Random(21), BLOCK)), false, false, 1000, Map.of()));
        assertEquals(NioBackingFile.MAX_WORKERS, workerThreads());
        file.close();
        assertEquals(0, workerThreads());
        assertEquals(-Errno.EBADF, file.extents(0, BLOCK, (offset, length, type) -> true));
    }

    private static long workerThreads()
    {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.isAlive() && t.getName().startsWith("jloop-nio-"))
                .count();
    }
}
