package dev.jloop.backend.nio;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.IovecIter;
import dev.jloop.iter.KvecIter;
import dev.jloop.testkit.AbstractBackingFileTest;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.file.FileSystemException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The conformance suite on the nio backend with O_DIRECT; and what only it does. */
public class TestNioDirectBackend
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new NioBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return true;
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        // no read-ahead: O_DIRECT does not use the page cache
        return Capabilities.builder()
                .flush(true).trim(true).zero(true).extents(true).multiConn(true)
                .threadModel(ThreadModel.PARALLEL)
                .logicalBlockSize(BLOCK)
                .queueDepth(queueDepth())
                .build();
    }

    @Override
    protected boolean plainFile()
    {
        return true;
    }

    /**
     * Many unaligned writes in flight at once, each a distinct byte value, crowded into a few blocks
     * so that almost every one read-modify-writes a block another one is writing. Rounds of writes
     * with disjoint ranges run concurrently (their result does not depend on order); each round is
     * checked against a model. A stale block written back by a read-modify-write would undo
     * another write of the round and show up as a wrong byte.
     */
    @Test
    public void testConcurrentOverlappingBlockWritesLoseNothing()
            throws Exception
    {
        int size = 8 * BLOCK;
        Path path = createFile("rmw.img", new byte[size]);
        byte[] model = new byte[size];
        Random random = new Random(42);
        int inFlight = 16;
        try (BackingFile file = factory().open(new BackendConfig(path, false, true, inFlight, Map.of()))) {
            byte value = 1;
            for (int round = 0; round < 60; round++) {
                // cut [0, size) at random points into inFlight disjoint, unaligned, mostly sub-block pieces
                int[] cuts = new int[inFlight - 1];
                for (int i = 0; i < cuts.length; i++) {
                    cuts[i] = 1 + random.nextInt(size - 1);
                }
                Arrays.sort(cuts);
                CountDownLatch done = new CountDownLatch(inFlight);
                AtomicInteger failures = new AtomicInteger();
                Kiocb[] kiocbs = new Kiocb[inFlight];
                int start = 0;
                for (int i = 0; i < inFlight; i++) {
                    int end = i < cuts.length ? cuts[i] : size;
                    // leave some bytes untouched, so reads of neighbours' bytes matter too
                    int skip = end - start > 2 ? random.nextInt(2) : 0;
                    int length = end - start - skip;
                    byte b = value++;
                    if (value == 0) {
                        value = 1;
                    }
                    Arrays.fill(model, start + skip, start + skip + length, b);
                    IovIter iter = iter(b, length, i % 2 == 0);
                    int expected = length;
                    Kiocb kiocb = aio.alloc();
                    kiocb.initRw(Kiocb.Op.WRITE, file, iter, start + skip, 0).initCallback((k, res) -> {
                        if (res != expected) {
                            failures.incrementAndGet();
                        }
                        done.countDown();
                    }, null);
                    kiocbs[i] = kiocb;
                    start = end;
                }
                for (Kiocb kiocb : kiocbs) {
                    aio.submit(kiocb);
                }
                assertTrue(done.await(30, TimeUnit.SECONDS), "writes of round " + round + " did not complete");
                for (Kiocb kiocb : kiocbs) {
                    aio.free(kiocb);
                }
                assertEquals(0, failures.get(), "writes of round " + round + " that transferred less than asked or failed");
                assertArrayEquals(model, readFully(file, IovIter.Kind.IOVEC, 0, size, false), "round " + round);
            }
        }
        assertArrayEquals(model, readFile(path), "file content after close");
    }

    private static IovIter iter(byte value, int length, boolean heap)
    {
        if (heap) {
            byte[] data = new byte[length];
            Arrays.fill(data, value);
            return IovecIter.of(Direction.SOURCE, data);
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(length + 1);
        for (int i = 0; i < buffer.capacity(); i++) {
            buffer.put(i, value);
        }
        return KvecIter.of(Direction.SOURCE, buffer.position(1));
    }

    @Test
    public void testFileSystemRefusingDirectIsNamed()
    {
        // procfs refuses O_DIRECT with EINVAL
        FileSystemException e = assertThrows(FileSystemException.class, () -> open(Path.of("/proc/version"), true));
        assertTrue(e.getMessage().contains("does not support O_DIRECT"), e.getMessage());
    }
}
