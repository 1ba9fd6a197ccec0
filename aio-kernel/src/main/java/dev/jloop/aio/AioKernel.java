package dev.jloop.aio;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.Kiocb;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The seed's in-kernel AIO interface: {@code aio_kernel_alloc()} is {@link #alloc()},
 * {@code aio_kernel_submit()} is {@link #submit(Kiocb)}. Kiocbs come from a pool (no allocation in
 * steady state); submission calls the backing file's operation; a result returned at once is
 * completed here, {@link Kiocb#QUEUED} is completed later by the backend. Tracks operations in flight
 * so a device can drain before it closes.
 *
 * <p>Thread-safe: any thread may allocate, submit and free.
 */
public final class AioKernel
        implements Kiocb.Owner
{
    private static final Logger log = LoggerFactory.getLogger(AioKernel.class);

    private final AtomicInteger inFlight = new AtomicInteger();
    private final Object idle = new Object();
    private Kiocb[] pool = new Kiocb[64];
    private int pooled;
    private int allocated;

    /** A kiocb ready for {@code init*}; return it with {@link #free(Kiocb)} once its completion ran. */
    public Kiocb alloc()
    {
        synchronized (this) {
            allocated++;
            if (pooled > 0) {
                Kiocb kiocb = pool[--pooled];
                pool[pooled] = null;
                return kiocb;
            }
        }
        return new Kiocb(this);
    }

    /** Returns a completed kiocb to the pool. */
    public void free(Kiocb kiocb)
    {
        kiocb.reset();
        synchronized (this) {
            if (allocated == 0) {
                throw new IllegalStateException("kiocb freed more often than allocated");
            }
            allocated--;
            if (pooled == pool.length) {
                pool = java.util.Arrays.copyOf(pool, pool.length * 2);
            }
            pool[pooled++] = kiocb;
        }
    }

    /**
     * Submits a prepared kiocb to its file. Its completion runs exactly once: in this thread when the
     * backend answers at once, later on a backend thread when it answers {@link Kiocb#QUEUED}.
     * A backend that throws is a bug; the kiocb then completes with {@code -EIO}.
     */
    public void submit(Kiocb kiocb)
    {
        kiocb.markSubmitted();
        inFlight.incrementAndGet();
        long res;
        try {
            res = kiocb.callFile();
        }
        catch (RuntimeException | Error e) {
            log.error("backend failed on {}", kiocb, e);
            res = kiocb.inFlight() ? -Errno.EIO : Kiocb.QUEUED;
        }
        if (res != Kiocb.QUEUED) {
            kiocb.complete(res);
        }
    }

    /** Starts batching this thread's submissions to {@code file} ({@code blk_start_plug}). */
    public void plug(BackingFile file)
    {
        file.plug();
    }

    /** Submits what this thread batched since {@link #plug(BackingFile)} ({@code blk_finish_plug}). */
    public void unplug(BackingFile file)
    {
        file.unplug();
    }

    @Override
    public void completed(Kiocb kiocb, long res)
    {
        if (inFlight.decrementAndGet() == 0) {
            synchronized (idle) {
                idle.notifyAll();
            }
        }
    }

    /** Kiocbs submitted and not yet completed. */
    public int inFlight()
    {
        return inFlight.get();
    }

    /** Kiocbs allocated and not yet freed (leak accounting). */
    public synchronized int allocated()
    {
        return allocated;
    }

    /** Waits until nothing is in flight. Returns false on timeout. */
    public boolean awaitIdle(long timeout, TimeUnit unit)
            throws InterruptedException
    {
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        synchronized (idle) {
            while (inFlight.get() > 0) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                TimeUnit.NANOSECONDS.timedWait(idle, left);
            }
        }
        return true;
    }
}
