package dev.jloop.nbd;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The clock a server's connections are dropped by: a client still in the handshake after
 * {@code handshake-timeout}, or one whose replies made no progress for {@code reply-timeout}.
 * One daemon thread for every connection, none when both are 0 (no limit). The connection decides
 * what a timeout means; this only runs its checks on time.
 *
 * <p>Owned by the server, which closes it once every connection has ended.
 */
final class NbdTimeouts
{
    private final long handshakeTimeoutMillis;
    private final long replyTimeoutMillis;
    private final ScheduledExecutorService timer;
    private final List<Thread> threads = new CopyOnWriteArrayList<>();

    NbdTimeouts(long handshakeTimeoutMillis, long replyTimeoutMillis)
    {
        this.handshakeTimeoutMillis = handshakeTimeoutMillis;
        this.replyTimeoutMillis = replyTimeoutMillis;
        this.timer = Executors.newSingleThreadScheduledExecutor(runnable -> {
            Thread thread = new Thread(runnable, "nbd-timer");
            thread.setDaemon(true);
            threads.add(thread);
            return thread;
        });
    }

    /** 0: no limit. */
    long handshakeTimeoutMillis()
    {
        return handshakeTimeoutMillis;
    }

    /** 0: no limit. */
    long replyTimeoutMillis()
    {
        return replyTimeoutMillis;
    }

    /**
     * Runs {@code expire} once {@code handshake-timeout} have passed; the caller cancels the
     * returned future when the handshake is over in time. Null when there is no limit.
     */
    ScheduledFuture<?> handshakeDeadline(Runnable expire)
    {
        if (handshakeTimeoutMillis == 0) {
            return null;
        }
        try {
            return timer.schedule(expire, handshakeTimeoutMillis, TimeUnit.MILLISECONDS);
        }
        catch (RejectedExecutionException e) {
            // closing: the connection is being stopped anyway
            return null;
        }
    }

    /**
     * Runs {@code check} several times per {@code reply-timeout} until the caller cancels the
     * returned future. Null when there is no reply timeout.
     */
    ScheduledFuture<?> watchReplies(Runnable check)
    {
        if (replyTimeoutMillis == 0) {
            return null;
        }
        long period = Math.max(10, replyTimeoutMillis / 4);
        try {
            return timer.scheduleAtFixedRate(check, period, period, TimeUnit.MILLISECONDS);
        }
        catch (RejectedExecutionException e) {
            // closing: the connection is being stopped anyway
            return null;
        }
    }

    /** Runs {@code task} every {@code periodMillis} until the clock stops. */
    void every(long periodMillis, Runnable task)
    {
        try {
            timer.scheduleWithFixedDelay(task, periodMillis, periodMillis, TimeUnit.MILLISECONDS);
        }
        catch (RejectedExecutionException e) {
            // closing
        }
    }

    /** Stops the clock and waits for its thread to end. */
    void close()
    {
        timer.shutdownNow();
        try {
            timer.awaitTermination(1, TimeUnit.MINUTES);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        // a terminated executor's thread may still be finishing
        for (Thread thread : threads) {
            try {
                thread.join();
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
