package dev.jloop.backend.nio;

import dev.jloop.testkit.AbstractFileBackendTest;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.IovecIter;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestNioBackend
        extends AbstractFileBackendTest
{
    @Override
    protected BackendFactory factory()
    {
        return new NioBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return false;
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
        try (BackingFile file = factory().open(BackendConfig.of(file(BLOCK, 20)))) {
            assertEquals(ThreadModel.PARALLEL, file.capabilities().threadModel());
            AtomicReference<Thread> completer = new AtomicReference<>();
            CompletableFuture<Long> done = new CompletableFuture<>();
            Kiocb kiocb = aio.alloc();
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
            aio.free(kiocb);
        }
    }

    @Test
    public void testCloseStopsTheWorkers()
            throws IOException
    {
        BackingFile file = factory().open(new BackendConfig(file(BLOCK, 21), false, false, 1000, Map.of()));
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
