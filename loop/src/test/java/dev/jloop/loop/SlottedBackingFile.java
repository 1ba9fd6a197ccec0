package dev.jloop.loop;

import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ForwardingBackingFile;

import java.io.IOException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A file shaped like the io_uring backend: a fixed number of slots, a submitter that finds none free
 * waits for one, and a single completion thread that runs the operations on the file it wraps and
 * completes them holding its reap lock. A completion that waited for a slot here would wait forever:
 * only that thread frees slots.
 */
final class SlottedBackingFile
        extends ForwardingBackingFile
{
    private static final Kiocb STOP = new Kiocb(null);

    private final Capabilities capabilities;
    private final Semaphore slots;
    private final LinkedBlockingQueue<Kiocb> submitted = new LinkedBlockingQueue<>();
    private final ReentrantLock reapLock = new ReentrantLock();
    private final Thread completionThread;
    /** Submissions that found every slot taken and had to wait. */
    final AtomicInteger waits = new AtomicInteger();
    /** Submissions made by the completion thread itself, while completing. */
    final AtomicInteger submittedFromCompletion = new AtomicInteger();

    /** @param declareDepth whether the capabilities declare the slots as queue depth */
    SlottedBackingFile(BackingFile delegate, Capabilities capabilities, int slots, boolean declareDepth)
    {
        super(delegate);
        this.capabilities = capabilities.toBuilder().queueDepth(declareDepth ? slots : 0).build();
        this.slots = new Semaphore(slots);
        this.completionThread = new Thread(this::complete, "slotted-completion");
        completionThread.setDaemon(true);
        completionThread.start();
    }

    private long queue(Kiocb kiocb)
    {
        if (Thread.currentThread() == completionThread) {
            submittedFromCompletion.incrementAndGet();
        }
        if (!slots.tryAcquire()) {
            waits.incrementAndGet();
            slots.acquireUninterruptibly();
        }
        submitted.add(kiocb);
        return Kiocb.QUEUED;
    }

    private void complete()
    {
        while (true) {
            Kiocb kiocb;
            try {
                kiocb = submitted.take();
            }
            catch (InterruptedException e) {
                return;
            }
            if (kiocb == STOP) {
                return;
            }
            reapLock.lock();
            try {
                long res = switch (kiocb.op()) {
                    case READ -> delegate().readIter(kiocb);
                    case WRITE -> delegate().writeIter(kiocb);
                    case FSYNC -> delegate().fsync(kiocb);
                    case FALLOCATE -> delegate().fallocate(kiocb);
                };
                slots.release();
                kiocb.complete(res);
            }
            finally {
                reapLock.unlock();
            }
        }
    }

    @Override
    public long readIter(Kiocb kiocb)
    {
        return queue(kiocb);
    }

    @Override
    public long writeIter(Kiocb kiocb)
    {
        return queue(kiocb);
    }

    @Override
    public long fsync(Kiocb kiocb)
    {
        return queue(kiocb);
    }

    @Override
    public long fallocate(Kiocb kiocb)
    {
        return queue(kiocb);
    }

    @Override
    public Capabilities capabilities()
    {
        return capabilities;
    }

    @Override
    public void close()
            throws IOException
    {
        submitted.add(STOP);
        try {
            completionThread.join(10_000);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        super.close();
    }
}
