package dev.jloop.uring;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * Waiting a short while for a ring's next completion by watching its CQ tail, before sleeping in
 * {@code io_uring_enter(2)}: the counterpart of the kernel's {@code net.core.busy_poll} for an event
 * loop. A thread that sleeps while its request is answered pays twice for it: its CPU goes idle (in a
 * virtual machine, the vCPU halts and exits to the host), and the completion must wake it and
 * switch it back in. At one request in flight that is most of a request's time (docs/nbd.md,
 * "Busy polling"). A thread that keeps watching finds the CQE as soon as the kernel posts it:
 * without {@code IORING_SETUP_COOP_TASKRUN} or {@code DEFER_TASKRUN} the kernel interrupts a running
 * task to complete its work items (the socket's receive, the file's read), so no system call is needed
 * to see them.
 *
 * <p>It costs the CPU it watches with, so it is bounded twice: each wait polls at most the given
 * time, and at most one thread fewer than there are processors polls at once (one at least), so
 * that pollers never take every CPU from the clients and the threads they wait for.
 */
public final class BusyPoll
{
    private static final int MAX_POLLING = Math.max(1, Runtime.getRuntime().availableProcessors() - 1);
    private static final int CLOCK_EVERY = 16;
    private static final AtomicInteger polling = new AtomicInteger();
    private static final LongAdder found = new LongAdder();

    private BusyPoll() {}

    /** Completions that polling found in this process so far (they would have woken a sleeping thread otherwise). */
    public static long found()
    {
        return found.sum();
    }

    /**
     * Watches {@code ring}'s CQ for up to {@code nanos}; whether a CQE is ready. Returns {@code false}
     * at once when as many threads poll already as may.
     */
    public static boolean awaitCompletion(Ring ring, long nanos)
    {
        if (ring.cqReady() > 0) {
            return true;
        }
        if (nanos <= 0 || (ring.setupFlags() & (IoUring.SETUP_COOP_TASKRUN | IoUring.SETUP_DEFER_TASKRUN)) != 0) {
            // such a ring's completions wait for the thread to enter the kernel: watching would not see them
            return false;
        }
        if (polling.incrementAndGet() > MAX_POLLING) {
            polling.decrementAndGet();
            return false;
        }
        try {
            long deadline = System.nanoTime() + nanos;
            do {
                // the clock is read once per CLOCK_EVERY looks: in a virtual machine it costs several times a look
                for (int i = 0; i < CLOCK_EVERY; i++) {
                    Thread.onSpinWait();
                    if (ring.cqReady() > 0) {
                        found.increment();
                        return true;
                    }
                }
            }
            while (System.nanoTime() - deadline < 0);
            return false;
        }
        finally {
            polling.decrementAndGet();
        }
    }
}
