package dev.jloop.filter;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;

/**
 * Runs the steps of requests one after another on a thread instead of inside one another. A request
 * in pieces starts its next piece from the last one's completion; over a file that answers at once
 * that completion runs inside the piece's submission, and without this every piece would nest a
 * stack frame. A step started while the thread is already running one waits in a queue until that
 * step returns.
 */
final class Trampoline
{
    private static final Logger log = LoggerFactory.getLogger(Trampoline.class);
    private static final ThreadLocal<ArrayDeque<Runnable>> PENDING = new ThreadLocal<>();

    private Trampoline() {}

    /** Runs {@code step} now, or after the step this thread is running, if any. */
    static void run(Runnable step)
    {
        ArrayDeque<Runnable> pending = PENDING.get();
        if (pending != null) {
            pending.add(step);
            return;
        }
        pending = new ArrayDeque<>();
        PENDING.set(pending);
        try {
            for (Runnable next = step; next != null; next = pending.poll()) {
                try {
                    next.run();
                }
                catch (RuntimeException e) {
                    // a bug in one request; the steps of the others queued here must still run
                    log.error("filter step failed", e);
                }
            }
        }
        finally {
            PENDING.remove();
        }
    }
}
