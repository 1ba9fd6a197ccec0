package dev.jloop.nbd;

import dev.jloop.iter.PagePool;

import java.io.IOException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static java.util.Objects.requireNonNull;

/**
 * The requests of one connection and the payload they may hold, so that no client makes the server
 * allocate without bound: at most {@code maxInflightRequests} requests, made as needed and reused
 * for the life of the connection, and at most {@code maxInflightBytes} of payload, counted from
 * before the pages are taken until the reply has been written. A request larger than the byte
 * budget takes the whole budget. Pages come from the server-wide {@link PagePool}.
 *
 * <p>Ownership: the connection's reader takes a request and its pages here; the reply writer gives
 * them back with {@link #recycle} once the reply is written or dropped (pages to the page pool,
 * bytes to the budget, the request to the free list). Every method that may wait has a twin that
 * does not ({@link #poll} and {@link #take}, {@link #tryReserve} and {@link #reserve}), so that the
 * reader, which holds the device's plug while it works through buffered requests, can drop the plug
 * before it waits.
 */
final class NbdRequestPool
{
    private final PagePool pagePool;
    private final int maxInflightBytes;
    private final int maxInflightRequests;
    private final Semaphore inflightBytes;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition returned = lock.newCondition();
    private NbdRequest free;
    private int created;
    private int inUse;

    NbdRequestPool(PagePool pagePool, int maxInflightBytes, int maxInflightRequests)
    {
        this.pagePool = requireNonNull(pagePool, "pagePool is null");
        this.maxInflightBytes = maxInflightBytes;
        this.maxInflightRequests = maxInflightRequests;
        this.inflightBytes = new Semaphore(maxInflightBytes);
    }

    /** A free request, or a new one while fewer than {@code maxInflightRequests} exist; null when all are in use. */
    NbdRequest poll()
    {
        lock.lock();
        try {
            if (free == null && created >= maxInflightRequests) {
                return null;
            }
            return takeLocked();
        }
        finally {
            lock.unlock();
        }
    }

    /** As {@link #poll}, but waits for a request to come back when all are in use. */
    NbdRequest take()
            throws IOException
    {
        lock.lock();
        try {
            if (created >= maxInflightRequests) {
                while (free == null) {
                    returned.await();
                }
            }
            return takeLocked();
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        finally {
            lock.unlock();
        }
    }

    private NbdRequest takeLocked()
    {
        NbdRequest request = free;
        if (request != null) {
            free = request.next;
            request.next = null;
        }
        else {
            request = new NbdRequest();
            created++;
        }
        inUse++;
        return request;
    }

    /** Whether the page pool can ever hold {@code length} bytes; a READ or WRITE longer than that gets ENOMEM. */
    boolean fits(long length)
    {
        return length <= pagePool.capacity();
    }

    /**
     * Takes budget and pages of {@code length} bytes for the request, if both are there now; false
     * otherwise, keeping whatever it got for {@link #reserve} to complete.
     */
    boolean tryReserve(NbdRequest request, long length)
    {
        if (request.permits == 0) {
            int permits = permits(length);
            if (!inflightBytes.tryAcquire(permits)) {
                return false;
            }
            request.permits = permits;
        }
        request.ensurePages(PagePool.maxPages(length));
        int n = pagePool.tryAllocate(length, request.pages);
        if (n < 0) {
            return false;
        }
        request.nrPages = n;
        return true;
    }

    /** As {@link #tryReserve}, but waits for the budget and then for the pages. */
    void reserve(NbdRequest request, long length)
            throws IOException
    {
        try {
            if (request.permits == 0) {
                int permits = permits(length);
                inflightBytes.acquire(permits);
                request.permits = permits;
            }
            request.ensurePages(PagePool.maxPages(length));
            request.nrPages = pagePool.allocate(length, request.pages);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    /** Gives back a request whose reply has been sent or dropped, or that never got that far: pages, budget, then the request itself. */
    void recycle(NbdRequest request)
    {
        if (request.nrPages > 0) {
            request.clearPageBuffers();
            pagePool.free(request.pages, request.nrPages);
            request.nrPages = 0;
        }
        if (request.permits > 0) {
            inflightBytes.release(request.permits);
            request.permits = 0;
        }
        lock.lock();
        try {
            request.next = free;
            free = request;
            inUse--;
            returned.signalAll();
        }
        finally {
            lock.unlock();
        }
    }

    /** Requests taken and not yet recycled. */
    int inUse()
    {
        lock.lock();
        try {
            return inUse;
        }
        finally {
            lock.unlock();
        }
    }

    /** Whether every request taken has been recycled; does not wait. */
    boolean allReturned()
    {
        lock.lock();
        try {
            return inUse == 0;
        }
        finally {
            lock.unlock();
        }
    }

    /** Waits until every request taken has been recycled: the connection may end then. */
    void awaitAllReturned()
    {
        lock.lock();
        try {
            while (inUse > 0) {
                returned.awaitUninterruptibly();
            }
        }
        finally {
            lock.unlock();
        }
    }

    private int permits(long length)
    {
        return (int) Math.min(length, maxInflightBytes);
    }
}
