package dev.jloop.posix;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestBlockRangeLock
{
    private final ExecutorService executor = Executors.newCachedThreadPool();

    @AfterEach
    public void tearDown()
    {
        executor.shutdownNow();
    }

    @Test
    public void testSharedHoldsOverlapAndExclusiveWaitsForThem()
            throws Exception
    {
        BlockRangeLock lock = new BlockRangeLock(4);
        int a = lock.lock(0, 9, false);
        int b = lock.lock(5, 14, false);
        assertEquals(2, lock.held());

        Future<Integer> exclusive = executor.submit(() -> lock.lock(9, 9, true));
        assertWaits(exclusive);
        lock.unlock(a);
        assertWaits(exclusive);
        // released by another thread than the one that took it
        executor.submit(() -> lock.unlock(b)).get(10, TimeUnit.SECONDS);
        int c = exclusive.get(10, TimeUnit.SECONDS);

        Future<Integer> shared = executor.submit(() -> lock.lock(0, 100, false));
        assertWaits(shared);
        lock.unlock(c);
        lock.unlock(shared.get(10, TimeUnit.SECONDS));
        assertEquals(0, lock.held());
    }

    @Test
    public void testTryLockNeverWaitsAndHoldsOnlyWhatIsFree()
    {
        BlockRangeLock lock = new BlockRangeLock(2);
        int shared = lock.tryLock(0, 9, false);
        assertTrue(shared >= 0);
        assertTrue(lock.tryLock(5, 5, false) >= 0, "shared holds overlap");
        assertEquals(-1, lock.tryLock(9, 20, true), "an exclusive hold over a shared one");
        assertEquals(2, lock.held(), "a refused tryLock holds nothing");
        int exclusive = lock.tryLock(10, 20, true);
        assertTrue(exclusive >= 0, "disjoint from every hold");
        assertEquals(-1, lock.tryLock(20, 30, false), "a shared hold over an exclusive one");
        assertEquals(-1, lock.tryLock(15, 15, true));
        lock.unlock(exclusive);
        assertTrue(lock.tryLock(15, 15, true) >= 0, "free again once released");
    }

    @Test
    public void testDisjointRangesNeverWait()
    {
        BlockRangeLock lock = new BlockRangeLock(2);
        int a = lock.lock(0, 0, true);
        int b = lock.lock(1, 1, true);
        int c = lock.lock(2, 1000, false);
        lock.unlock(b);
        lock.unlock(a);
        lock.unlock(c);
        assertEquals(0, lock.held());
    }

    @Test
    public void testGrowsPastItsHoldersAndReusesHolds()
    {
        BlockRangeLock lock = new BlockRangeLock(1);
        int[] holds = new int[5];
        for (int i = 0; i < holds.length; i++) {
            holds[i] = lock.lock(i, i, true);
        }
        assertEquals(5, lock.held());
        lock.unlock(holds[2]);
        assertEquals(holds[2], lock.lock(7, 7, true));
        for (int hold : holds) {
            lock.unlock(hold);
        }
        assertEquals(0, lock.held());
    }

    @Test
    public void testBeforeWaitRunsBeforeEachWait()
            throws Exception
    {
        BlockRangeLock lock = new BlockRangeLock(2);
        int held = lock.lock(0, 3, false);
        AtomicInteger runs = new AtomicInteger();
        CountDownLatch ran = new CountDownLatch(1);
        Future<Integer> waiter = executor.submit(() -> lock.lock(3, 4, true, () -> {
            runs.incrementAndGet();
            ran.countDown();
        }));
        assertTrue(ran.await(10, TimeUnit.SECONDS));
        lock.unlock(held);
        lock.unlock(waiter.get(10, TimeUnit.SECONDS));
        assertTrue(runs.get() >= 1);

        lock.unlock(lock.lock(0, 0, true, () -> { throw new AssertionError("nothing to wait for"); }));
    }

    @Test
    public void testInterruptDoesNotEndTheWait()
            throws Exception
    {
        BlockRangeLock lock = new BlockRangeLock(2);
        int held = lock.lock(0, 0, true);
        boolean[] interrupted = new boolean[1];
        Thread waiter = new Thread(() -> {
            int hold = lock.lock(0, 0, true);
            interrupted[0] = Thread.currentThread().isInterrupted();
            lock.unlock(hold);
        });
        waiter.start();
        waiter.interrupt();
        waiter.join(200);
        assertTrue(waiter.isAlive());
        lock.unlock(held);
        waiter.join(10_000);
        assertFalse(waiter.isAlive());
        assertTrue(interrupted[0]);
    }

    @Test
    public void testMisuse()
    {
        BlockRangeLock lock = new BlockRangeLock(2);
        int hold = lock.lock(0, 0, false);
        lock.unlock(hold);
        assertThrows(IllegalStateException.class, () -> lock.unlock(hold));
        assertThrows(IllegalStateException.class, () -> lock.unlock(7));
        assertThrows(IllegalArgumentException.class, () -> lock.lock(2, 1, true));
        assertThrows(IllegalArgumentException.class, () -> lock.lock(-1, 1, true));
        assertThrows(IllegalArgumentException.class, () -> new BlockRangeLock(0));
    }

    private static void assertWaits(Future<?> future)
            throws Exception
    {
        assertThrows(TimeoutException.class, () -> future.get(100, TimeUnit.MILLISECONDS));
    }
}
