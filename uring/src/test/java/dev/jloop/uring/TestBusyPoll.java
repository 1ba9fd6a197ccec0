package dev.jloop.uring;

import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.jloop.uring.IoUringAssumptions.assumeIoUring;
import static java.util.concurrent.TimeUnit.MILLISECONDS;
import static java.util.concurrent.TimeUnit.SECONDS;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class TestBusyPoll
{
    private final List<AutoCloseable> closeables = new ArrayList<>();

    @BeforeEach
    void setUp()
    {
        assumeIoUring();
    }

    @AfterEach
    void tearDown()
            throws Exception
    {
        for (int i = closeables.size() - 1; i >= 0; i--) {
            closeables.get(i).close();
        }
    }

    private Ring ring()
            throws NativeIoException
    {
        return ring(0);
    }

    private Ring ring(int flags)
            throws NativeIoException
    {
        Ring ring = Ring.builder(4).flags(flags).open();
        closeables.add(ring);
        return ring;
    }

    private static long address(ByteBuffer buffer)
    {
        return jnr.ffi.Runtime.getSystemRuntime().getMemoryManager().newPointer(buffer).address();
    }

    @Test
    void aReadyCompletionIsFoundAtOnce()
            throws NativeIoException
    {
        Ring ring = ring();
        assertTrue(ring.prepNop(1));
        assertEquals(1, ring.submit());
        assertTrue(BusyPoll.awaitCompletion(ring, 0), "a NOP completes while it is submitted");
    }

    @Test
    void nothingInFlightPollsTheWholeTimeAndReportsNone()
            throws NativeIoException
    {
        Ring ring = ring();
        long start = System.nanoTime();
        assertFalse(BusyPoll.awaitCompletion(ring, MILLISECONDS.toNanos(20)));
        assertTrue(System.nanoTime() - start >= MILLISECONDS.toNanos(20), "returned before its time was up");
        assertFalse(BusyPoll.awaitCompletion(ring, 0), "no time: no wait");
    }

    /**
     * The point of polling: a receive armed on the ring completes when the peer writes, and the CQE
     * appears while the thread watches in user space, without entering the kernel again. A ring set up
     * to run completions only on enter ({@code DEFER_TASKRUN}) would fail this.
     */
    @Test
    @Timeout(30)
    void aReceiveCompletesWhileTheThreadWatches()
            throws Exception
    {
        receiveWhileWatching(ring());
    }

    /**
     * On a COOP_TASKRUN ring the receive's completion waits for the next enter; with TASKRUN_FLAG the
     * watcher sees that it waits, without entering, and the reap enters and finds it.
     */
    @Test
    @Timeout(30)
    void onACooperativeRingTheWaitingWorkIsSeen()
            throws Exception
    {
        Ring ring;
        try {
            ring = ring(IoUring.SETUP_COOP_TASKRUN | IoUring.SETUP_TASKRUN_FLAG);
        }
        catch (NativeIoException e) {
            assumeTrue(e.errno() != Errors.EINVAL || System.getenv("CI") != null, "the kernel has no COOP_TASKRUN (before 5.19)");
            throw e;
        }
        receiveWhileWatching(ring);
    }

    @Test
    void aCooperativeRingWithoutTheFlagIsNotWatched()
            throws NativeIoException
    {
        Ring ring = ring(IoUring.SETUP_COOP_TASKRUN);
        long start = System.nanoTime();
        assertFalse(BusyPoll.awaitCompletion(ring, SECONDS.toNanos(5)));
        assertTrue(System.nanoTime() - start < SECONDS.toNanos(1), "watched a ring whose completions it cannot see");
    }

    private void receiveWhileWatching(Ring ring)
            throws Exception
    {
        int[] sockets = new int[2];
        assertEquals(0, Posix.socketpair(Posix.AF_UNIX, Posix.SOCK_STREAM | Posix.SOCK_CLOEXEC, sockets));
        closeables.add(() -> Posix.close(sockets[0]));
        closeables.add(() -> Posix.close(sockets[1]));
        ByteBuffer buffer = ByteBuffer.allocateDirect(64);
        long address = address(buffer);
        assertTrue(ring.prep(IoUring.OP_RECV, 0, sockets[0], 0, address, 64, 0, 7, 0));
        assertEquals(1, ring.submit());
        assertEquals(0, ring.cqReady(), "nothing sent yet");
        long enters = ring.submitCalls();
        long found = BusyPoll.found();

        Thread peer = new Thread(() -> {
            try {
                Thread.sleep(20);
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            ByteBuffer out = ByteBuffer.allocateDirect(5);
            Posix.write(sockets[1], address(out), 5);
        });
        peer.start();
        assertTrue(BusyPoll.awaitCompletion(ring, SECONDS.toNanos(20)), "the receive's CQE did not appear while polling");
        peer.join();
        assertEquals(enters, ring.submitCalls(), "polling entered the kernel");
        assertEquals(found + 1, BusyPoll.found(), "completions found by polling");
        int[] res = new int[1];
        ring.reap((userData, result, flags) -> res[0] = result);
        assertEquals(5, res[0]);
    }

    /** At most one poller fewer than there are CPUs (one at least): the others sleep at once instead. */
    @Test
    @Timeout(60)
    void pollersAreBounded()
            throws Exception
    {
        int max = Math.max(1, Runtime.getRuntime().availableProcessors() - 1);
        List<Ring> rings = new ArrayList<>();
        for (int i = 0; i <= max; i++) {
            rings.add(ring());
        }
        CountDownLatch started = new CountDownLatch(max);
        AtomicInteger failed = new AtomicInteger();
        List<Thread> pollers = new ArrayList<>();
        for (int i = 0; i < max; i++) {
            Ring ring = rings.get(i);
            Thread poller = new Thread(() -> {
                started.countDown();
                if (BusyPoll.awaitCompletion(ring, SECONDS.toNanos(2))) {
                    failed.incrementAndGet();
                }
            });
            pollers.add(poller);
            poller.start();
        }
        assertTrue(started.await(10, TimeUnit.SECONDS));
        Thread.sleep(200);
        long start = System.nanoTime();
        assertFalse(BusyPoll.awaitCompletion(rings.get(max), SECONDS.toNanos(2)));
        long waited = System.nanoTime() - start;
        for (Thread poller : pollers) {
            poller.join();
        }
        assertTrue(waited < MILLISECONDS.toNanos(1000), "a poller beyond the bound polled for " + waited / 1_000_000 + " ms");
        assertEquals(0, failed.get());
    }
}
