package dev.jloop.aio;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.mockito.InOrder;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.ToLongFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.mockito.Mockito.inOrder;
import static org.mockito.Mockito.mock;

class TestAioKernel
{
    private final AioKernel aio = new AioKernel();
    private final List<Long> results = Collections.synchronizedList(new ArrayList<>());
    private final List<Thread> completionThreads = Collections.synchronizedList(new ArrayList<>());

    @AfterEach
    void nothingLeaked()
    {
        assertEquals(0, aio.inFlight(), "in flight");
        assertEquals(0, aio.allocated(), "allocated");
    }

    @Test
    void kiocbsArePooled()
    {
        FakeFile file = new FakeFile(kiocb -> 7);
        Set<Kiocb> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        for (int i = 0; i < 1000; i++) {
            Kiocb kiocb = aio.alloc();
            seen.add(kiocb);
            kiocb.initFsync(file, false).initCallback(this::record, null);
            aio.submit(kiocb);
            aio.free(kiocb);
        }
        assertEquals(1, seen.size(), "steady state reuses one kiocb");
        assertEquals(1000, results.size());

        Kiocb a = aio.alloc();
        Kiocb b = aio.alloc();
        assertNotSame(a, b, "two live kiocbs are different objects");
        assertEquals(2, aio.allocated());
        aio.free(a);
        aio.free(b);
        assertSame(b, aio.alloc(), "the last freed is handed out first");
        aio.free(b);
    }

    @Test
    void freedKiocbKeepsNothing()
    {
        FakeFile file = new FakeFile(kiocb -> 0);
        Kiocb kiocb = aio.alloc();
        kiocb.initFallocate(file, 3, 100, 200).initCallback(this::record, "private");
        aio.submit(kiocb);
        aio.free(kiocb);
        assertEquals(null, kiocb.file());
        assertEquals(null, kiocb.privateData());
        assertEquals(0, kiocb.length());
    }

    @Test
    void freeMoreOftenThanAllocatedThrows()
    {
        Kiocb kiocb = aio.alloc();
        aio.free(kiocb);
        assertThrows(IllegalStateException.class, () -> aio.free(new Kiocb(aio)));
    }

    @Test
    void synchronousResultIsCompletedInTheSubmittingThread()
    {
        FakeFile file = new FakeFile(kiocb -> 4096);
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(Kiocb.Op.READ, file, null, 8192, 0).initCallback(this::record, null);
        aio.submit(kiocb);
        assertEquals(List.of(4096L), results, "completed before submit returned");
        assertEquals(List.of(Thread.currentThread()), completionThreads);
        assertEquals(8192, file.lastPos);
        assertEquals(Kiocb.Op.READ, file.lastOp);
        assertFalse(kiocb.inFlight());
        aio.free(kiocb);
    }

    @Test
    void everyOpReachesItsOperation()
    {
        FakeFile file = new FakeFile(kiocb -> 0);
        for (Kiocb.Op op : Kiocb.Op.values()) {
            Kiocb kiocb = aio.alloc();
            switch (op) {
                case READ:
                case WRITE:
                    kiocb.initRw(op, file, null, 5, 0);
                    break;
                case FSYNC:
                    kiocb.initFsync(file, true);
                    break;
                default:
                    kiocb.initFallocate(file, 2, 10, 20);
            }
            kiocb.initCallback(this::record, null);
            aio.submit(kiocb);
            assertEquals(op, file.lastOp);
            aio.free(kiocb);
        }
        assertEquals(Boolean.TRUE, file.lastDatasync, "datasync reaches fsync");
        assertEquals(10, file.lastPos, "fallocate offset");
        assertEquals(List.of(0L, 0L, 0L, 0L), results);
    }

    @Test
    void queuedIsCompletedLaterFromAnotherThread()
            throws Exception
    {
        ConcurrentLinkedQueue<Kiocb> queued = new ConcurrentLinkedQueue<>();
        FakeFile file = new FakeFile(kiocb -> {
            queued.add(kiocb);
            return Kiocb.QUEUED;
        });
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(Kiocb.Op.WRITE, file, null, 0, 0).initCallback(this::record, null);
        aio.submit(kiocb);
        assertEquals(List.of(), results, "QUEUED is not a completion");
        assertEquals(1, aio.inFlight());
        assertTrue(kiocb.inFlight());

        Thread completer = new Thread(() -> queued.poll().complete(512), "completer");
        completer.start();
        completer.join();
        assertTrue(aio.awaitIdle(30, TimeUnit.SECONDS));
        assertEquals(List.of(512L), results);
        assertEquals(List.of(completer), completionThreads);
        aio.free(kiocb);
    }

    @Test
    void doubleCompletionThrowsAndIsNotDelivered()
    {
        FakeFile file = new FakeFile(kiocb -> 1);
        Kiocb kiocb = aio.alloc();
        kiocb.initFsync(file, false).initCallback(this::record, null);
        aio.submit(kiocb);
        assertThrows(IllegalStateException.class, () -> kiocb.complete(2));
        assertEquals(List.of(1L), results, "the second completion never reaches the callback");
        assertEquals(0, aio.inFlight(), "nor the accounting");
        assertThrows(IllegalArgumentException.class, () -> kiocb.complete(Kiocb.QUEUED));
        aio.free(kiocb);
    }

    @Test
    void submittingAKiocbInFlightThrows()
    {
        ConcurrentLinkedQueue<Kiocb> queued = new ConcurrentLinkedQueue<>();
        FakeFile file = new FakeFile(kiocb -> {
            queued.add(kiocb);
            return Kiocb.QUEUED;
        });
        Kiocb kiocb = aio.alloc();
        kiocb.initFsync(file, false).initCallback(this::record, null);
        aio.submit(kiocb);
        assertThrows(IllegalStateException.class, () -> aio.submit(kiocb));
        assertThrows(IllegalStateException.class, () -> aio.free(kiocb), "a kiocb in flight cannot be freed");
        queued.poll().complete(0);
        assertEquals(List.of(0L), results);
        assertEquals(1, aio.allocated());
        aio.free(kiocb);
    }

    @Test
    void backendThatThrowsCompletesWithEioOnce()
    {
        FakeFile file = new FakeFile(kiocb -> {
            throw new IllegalStateException("backend bug (expected by the test)");
        });
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(Kiocb.Op.READ, file, null, 0, 0).initCallback(this::record, null);
        aio.submit(kiocb);
        assertEquals(List.of((long) -Errno.EIO), results);
        aio.free(kiocb);
    }

    @Test
    void backendThatCompletedAndThenThrowsIsNotCompletedAgain()
    {
        FakeFile file = new FakeFile(kiocb -> {
            kiocb.complete(99);
            throw new IllegalStateException("backend bug after completing (expected by the test)");
        });
        Kiocb kiocb = aio.alloc();
        kiocb.initRw(Kiocb.Op.WRITE, file, null, 0, 0).initCallback(this::record, null);
        aio.submit(kiocb);
        assertEquals(List.of(99L), results);
        aio.free(kiocb);
    }

    @Test
    void inFlightAccountingAndAwaitIdle()
            throws Exception
    {
        ConcurrentLinkedQueue<Kiocb> queued = new ConcurrentLinkedQueue<>();
        FakeFile file = new FakeFile(kiocb -> {
            queued.add(kiocb);
            return Kiocb.QUEUED;
        });
        List<Kiocb> kiocbs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            Kiocb kiocb = aio.alloc();
            kiocb.initFsync(file, true).initCallback(this::record, null);
            aio.submit(kiocb);
            kiocbs.add(kiocb);
        }
        assertEquals(3, aio.inFlight());
        assertFalse(aio.awaitIdle(1, TimeUnit.MILLISECONDS), "not idle while kiocbs are in flight");
        queued.poll().complete(0);
        assertEquals(2, aio.inFlight());

        CompletableFuture<Boolean> idle = CompletableFuture.supplyAsync(() -> {
            try {
                return aio.awaitIdle(30, TimeUnit.SECONDS);
            }
            catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        });
        Thread completer = new Thread(() -> {
            Kiocb kiocb;
            while ((kiocb = queued.poll()) != null) {
                kiocb.complete(0);
            }
        });
        completer.start();
        completer.join();
        assertTrue(idle.get(30, TimeUnit.SECONDS), "awaitIdle wakes when the last kiocb completes");
        assertEquals(0, aio.inFlight());
        assertEquals(3, results.size());
        kiocbs.forEach(aio::free);
    }

    @Test
    void plugAndUnplugReachTheBackingFile()
    {
        BackingFile file = mock(BackingFile.class);
        aio.plug(file);
        aio.unplug(file);
        InOrder order = inOrder(file);
        order.verify(file).plug();
        order.verify(file).unplug();
        order.verifyNoMoreInteractions();
    }

    private void record(Kiocb kiocb, long res)
    {
        completionThreads.add(Thread.currentThread());
        results.add(res);
    }

    /** A backing file whose every operation answers with one function of the kiocb. */
    private static final class FakeFile
            implements BackingFile
    {
        private final ToLongFunction<Kiocb> answer;
        volatile Kiocb.Op lastOp;
        volatile long lastPos;
        volatile Boolean lastDatasync;
        final AtomicInteger calls = new AtomicInteger();

        FakeFile(ToLongFunction<Kiocb> answer)
        {
            this.answer = answer;
        }

        private long call(Kiocb kiocb, Kiocb.Op op)
        {
            calls.incrementAndGet();
            lastOp = op;
            lastPos = kiocb.pos();
            return answer.applyAsLong(kiocb);
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return call(kiocb, Kiocb.Op.READ);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return call(kiocb, Kiocb.Op.WRITE);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            lastDatasync = kiocb.datasync();
            return call(kiocb, Kiocb.Op.FSYNC);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return call(kiocb, Kiocb.Op.FALLOCATE);
        }

        @Override
        public long size()
        {
            return 1 << 20;
        }

        @Override
        public Capabilities capabilities()
        {
            return Capabilities.builder().threadModel(ThreadModel.PARALLEL).logicalBlockSize(1).build();
        }

        @Override
        public void close() {}
    }
}
