package dev.jloop.filter;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.Fallocate;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the error and delay filters do to requests, through an AioKernel as the loop device submits them. */
class TestFilters
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final AioKernel aio = new AioKernel();
    private final MemoryBackingFile memory = new MemoryBackingFile(1 << 20);

    @Test
    void errorFailsTheChosenOperationsWhileItsFileExistsAndNeverReachesTheFileBelow()
            throws Exception
    {
        Path trigger = dir.resolve("fail");
        BackingFile file = new ErrorFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")),
                Map.of("error", "ENOSPC", "error-ops", "write,zero", "error-file", trigger.toString()));
        assertEquals(4096, write(file, 0, (byte) 1), "no trigger file: writes pass");

        Files.createFile(trigger);
        assertEquals(-Errno.ENOSPC, write(file, 0, (byte) 2), "the chosen errno");
        assertEquals(-Errno.ENOSPC, run(file, aio.alloc().initFallocate(file, Fallocate.ZERO_RANGE, 0, 4096)), "zero is chosen too");
        assertEquals(0, run(file, aio.alloc().initFallocate(file, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 8192, 4096)), "trim is not");
        assertEquals(1, read(file, 0)[0], "the failed write never reached the file");

        Files.delete(trigger);
        assertEquals(4096, write(file, 0, (byte) 3));
        assertEquals(3, read(file, 0)[0]);
    }

    @Test
    void errorRateFailsAShareOfRequests()
            throws Exception
    {
        BackingFile file = new ErrorFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("error-rate", "50%"));
        int failed = 0;
        for (int i = 0; i < 400; i++) {
            if (write(file, 0, (byte) i) < 0) {
                failed++;
            }
        }
        assertTrue(failed > 100 && failed < 300, failed + " of 400 failed at 50%");
    }

    @Test
    void errorOptionsAreCheckedByName()
    {
        ErrorFilterFactory factory = new ErrorFilterFactory();
        assertTrue(assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("error", "EWHATEVER"))).getMessage()
                .startsWith("--error: unknown errno 'EWHATEVER'; known: "));
        assertEquals("--error-rate: '2' is not between 0 and 1 (0% and 100%)",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("error-rate", "2"))).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("error-ops", "read,frobnicate"))).getMessage()
                .startsWith("--error-ops: 'frobnicate' is not one of all, read, write, flush, trim, zero"));
    }

    @Test
    void delayHoldsEachCompletionBackWithoutAThreadPerRequest()
            throws Exception
    {
        BackingFile file = new DelayFilterFactory().wrap(memory, BackendConfig.of(dir.resolve("disk")), Map.of("delay-write", "200ms", "delay", "0"));
        long start = System.nanoTime();
        assertEquals(4096, read(file, 0).length, "reads are not delayed");
        assertTrue(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start) < 150, "a read took the write's delay");

        int threadsBefore = Thread.activeCount();
        List<CompletableFuture<Long>> writes = new ArrayList<>();
        start = System.nanoTime();
        for (int i = 0; i < 200; i++) {
            writes.add(submit(file, aio.alloc().initRw(Kiocb.Op.WRITE, file, source((byte) 7), 4096L * i, 0)));
        }
        assertTrue(Thread.activeCount() <= threadsBefore + 1, "200 delayed writes, " + (Thread.activeCount() - threadsBefore) + " new threads");
        for (CompletableFuture<Long> write : writes) {
            assertEquals(4096, write.get(10, TimeUnit.SECONDS));
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(millis >= 200 && millis < 2000, "200 writes in parallel, each delayed 200 ms, took " + millis + " ms");
        assertEquals(7, read(file, 4096L * 199)[0], "the delayed writes reached the file");
    }

    @Test
    void delayOptionsAreChecked()
    {
        DelayFilterFactory factory = new DelayFilterFactory();
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("delay-read", "soon")));
        assertEquals("--delay-jitter: '3' is not a share from 0 to 1",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("delay-jitter", "3"))).getMessage());
        assertNotEquals(0, factory.options().size());
    }

    private long write(BackingFile file, long pos, byte value)
            throws Exception
    {
        return run(file, aio.alloc().initRw(Kiocb.Op.WRITE, file, source(value), pos, 0));
    }

    private byte[] read(BackingFile file, long pos)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(4096);
        assertEquals(4096, run(file, aio.alloc().initRw(Kiocb.Op.READ, file, KvecIter.of(IovIter.Direction.DEST, buffer), pos, 0)));
        byte[] bytes = new byte[4096];
        buffer.clear().get(bytes);
        return bytes;
    }

    private static IovIter source(byte value)
    {
        byte[] bytes = new byte[4096];
        Arrays.fill(bytes, value);
        return KvecIter.of(IovIter.Direction.SOURCE, ByteBuffer.allocateDirect(4096).put(bytes).flip());
    }

    private long run(BackingFile file, Kiocb kiocb)
            throws Exception
    {
        return submit(file, kiocb).get(10, TimeUnit.SECONDS);
    }

    private CompletableFuture<Long> submit(BackingFile file, Kiocb kiocb)
    {
        CompletableFuture<Long> result = new CompletableFuture<>();
        kiocb.initCallback((k, res) -> {
            aio.free(k);
            result.complete(res);
        }, null);
        aio.submit(kiocb);
        return result;
    }
}
