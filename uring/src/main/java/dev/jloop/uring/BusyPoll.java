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
 * to see them. On a {@code COOP_TASKRUN} ring the work items wait for the thread's next enter instead,
 * and with {@code TASKRUN_FLAG} the SQ ring's {@code IORING_SQ_TASKRUN} says that they do: the watcher
 * sees that, and {@link Ring#reap} enters to run them (one system call, still no sleep and no wake-up).
 * A {@code DEFER_TASKRUN} ring, or a {@code COOP_TASKRUN} ring without the flag, shows nothing to watch.
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
     * Watches {@code ring}'s CQ for up to {@code nanos}; whether a CQE is ready, or completions wait for
     * {@link Ring#reap} to enter ({@link Ring#completionsHeld}). Returns {@code false} at once when as many
     * threads poll already as may.
     */
    public static boolean awaitCompletion(Ring ring, long nanos)
    {
        if (ready(ring)) {
            return true;
        }
        int flags = ring.setupFlags();
        if (nanos <= 0 || (flags & IoUring.SETUP_DEFER_TASKRUN) != 0
                || ((flags & IoUring.SETUP_COOP_TASKRUN) != 0 && (flags & IoUring.SETUP_TASKRUN_FLAG) == 0)) {
            // such a ring's completions wait for the thread to enter the kernel, unseen: watching would not see them
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
                    if (ready(ring)) {
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

    private static boolean ready(Ring ring)
    {
        return ring.cqReady() > 0 || ring.completionsHeld();
    }
}
