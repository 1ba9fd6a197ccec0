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
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.ServiceLoader;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
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
    public void testWorkersStartOnDemandAndCloseStopsThem()
            throws Exception
    {
        byte[] content = randomBytes(new Random(21), BLOCK);
        BackingFile file = factory().open(new BackendConfig(createFile("workers", content), false, false, 1000, Map.of()));
        assertEquals(0, workerThreads(), "an idle file holds no threads");
        assertArrayEquals(content, readConcurrently(file, 200), "200 reads at once");
        long workers = workerThreads();
        assertTrue(workers >= 1 && workers <= NioBackingFile.MAX_WORKERS, workers + " workers for 200 reads at once");
        file.close();
        assertEquals(0, workerThreads());
        assertEquals(-Errno.EBADF, file.extents(0, BLOCK, (offset, length, type) -> true));
    }

    @Test
    public void testIdleWorkersEndAndComeBackForNewWork()
            throws Exception
    {
        byte[] content = randomBytes(new Random(22), BLOCK);
        BackendConfig config = new BackendConfig(createFile("keepalive", content), false, false, 16, Map.of());
        try (NioBackingFile file = NioBackingFile.open(config, TimeUnit.MILLISECONDS.toNanos(100))) {
            for (int round = 0; round < 3; round++) {
                assertArrayEquals(content, readConcurrently(file, 64), "round " + round);
                assertTrue(file.workerCount() >= 1 && file.workerCount() <= 16, file.workerCount() + " workers for a queue depth of 16");
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (workerThreads() > 0 && System.nanoTime() < deadline) {
                    Thread.sleep(10);
                }
                assertEquals(0, workerThreads(), "idle workers end after their keep-alive");
                assertEquals(0, file.workerCount());
            }
        }
    }

    /** Reads the file's first {@link #BLOCK} bytes as {@code n} requests of one page each, all in flight at once. */
    private static byte[] readConcurrently(BackingFile file, int n)
            throws Exception
    {
        byte[] out = new byte[BLOCK];
        int chunk = BLOCK / 8;
        List<CompletableFuture<Long>> results = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int part = i % 8;
            CompletableFuture<Long> done = new CompletableFuture<>();
            byte[] buffer = new byte[chunk];
            Kiocb kiocb = new Kiocb(null);
            kiocb.initRw(Kiocb.Op.READ, file, IovecIter.of(Direction.DEST, buffer), (long) part * chunk, 0).initCallback((k, res) -> {
                System.arraycopy(buffer, 0, out, part * chunk, chunk);
                done.complete(res);
            }, null);
            kiocb.markSubmitted();
            assertEquals(Kiocb.QUEUED, file.readIter(kiocb));
            results.add(done);
        }
        for (CompletableFuture<Long> result : results) {
            assertEquals(chunk, result.get(30, TimeUnit.SECONDS));
        }
        return out;
    }

    private static long workerThreads()
    {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.isAlive() && t.getName().startsWith("jloop-nio-"))
                .count();
    }
}
