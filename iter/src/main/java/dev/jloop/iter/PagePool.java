package dev.jloop.iter;

import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.PageManager;

import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Aligned direct pages for request data, carved from large slabs and recycled, so the data path
 * allocates no buffers in steady state.
 *
 * <p>Pages come in orders 0 ({@value DirectMemory#PAGE_SIZE} bytes) to {@link #MAX_ORDER}; a request
 * of N bytes gets the largest pages that fit, so a 1 MiB read is one segment, not 256. When an order
 * runs out, a larger free page is split; when none is left a new slab is carved, up to the pool's
 * capacity. Split pages are not merged again: in steady state the same mix of orders is reused.
 *
 * <p>Bounded: at most {@link #capacity()} bytes are ever taken from the system. Leak accounting:
 * {@link #usedBytes()} is 0 again once every page has been freed, which tests check.
 *
 * <p>Grows on demand and shrinks when idle: a fresh pool holds no memory; {@link #trimIfIdle()},
 * called periodically, gives back every slab none of whose pages is in use, once no allocation has
 * happened since the previous call. Slabs carved by {@link #reserve} are pinned (the kernel may hold
 * them as io_uring fixed buffers) and never given back. Slab memory is an anonymous {@code mmap}, not
 * the JVM's direct memory, so {@code -XX:MaxDirectMemorySize} does not bound the pool: only its
 * capacity does.
 *
 * <p>Thread-safe. One short critical section per allocate/free call, never around I/O.
 */
public final class PagePool
        implements AutoCloseable
{
    public static final int MAX_ORDER = 8;
    public static final int SLAB_SIZE = 4 << 20;

    private static final PageManager PAGES = PageManager.getInstance();
    private static final int SLAB_PAGES = SLAB_SIZE / DirectMemory.PAGE_SIZE;
    private static final Cleaner CLEANER = Cleaner.create();

    private final long capacity;
    private final List<Slab> slabs = new ArrayList<>();
    private final Page[][] free = new Page[MAX_ORDER + 1][];
    private final int[] nrFree = new int[MAX_ORDER + 1];
    private long slabBytes;
    private long usedBytes;
    private long allocations;
    private long allocationsAtLastTrim;

    /** @param capacity upper bound on the slab memory, in bytes; rounded up to whole slabs */
    public PagePool(long capacity)
    {
        if (capacity <= 0) {
            throw new IllegalArgumentException("capacity must be positive: " + capacity);
        }
        this.capacity = capacity;
        for (int order = 0; order <= MAX_ORDER; order++) {
            free[order] = new Page[16];
        }
    }

    /** The most pages {@link #allocate} may need for {@code length} bytes (all of order 0). */
    public static int maxPages(long length)
    {
        return (int) ((length + DirectMemory.PAGE_SIZE - 1) / DirectMemory.PAGE_SIZE);
    }

    /**
     * Allocates pages covering {@code length} bytes into {@code out}, waiting while the pool is
     * exhausted. Returns the number of pages.
     *
     * @throws IllegalArgumentException if {@code length} can never fit in the pool
     */
    public synchronized int allocate(long length, Page[] out)
            throws InterruptedException
    {
        if (length > capacity) {
            throw new IllegalArgumentException("request of " + length + " bytes exceeds the page pool (" + capacity + " bytes)");
        }
        int n;
        while ((n = tryAllocate(length, out)) < 0) {
            wait();
        }
        return n;
    }

    /**
     * Allocates pages covering {@code length} bytes into {@code out}, all or nothing. Returns the
     * number of pages, or -1 when the pool cannot supply them now.
     */
    public synchronized int tryAllocate(long length, Page[] out)
    {
        if (length < 0) {
            throw new IllegalArgumentException("negative length: " + length);
        }
        allocations++;
        int n = 0;
        long left = length;
        while (left > 0) {
            int order = orderFor(left);
            Page page = null;
            for (; order >= 0 && page == null; order--) {
                page = take(order);
            }
            if (page == null) {
                free(out, n);
                return -1;
            }
            if (n == out.length) {
                free(out, n);
                throw new IllegalArgumentException("page array too small for " + length + " bytes; use maxPages()");
            }
            page.setFree(false);
            usedBytes += page.size();
            page.slab().used += page.size();
            out[n++] = page;
            left -= Math.min(left, page.size());
        }
        return n;
    }

    /**
     * Carves slabs now, up to {@code bytes} (at most the capacity), so that {@link #slabs()} covers
     * them before the first request; backends may then pin them once (io_uring fixed buffers). These
     * slabs are never given back by {@link #trimIfIdle()}.
     */
    public synchronized void reserve(long bytes)
    {
        while (slabBytes < Math.min(bytes, roundUpToSlab(capacity)) && carveSlab()) {
            slabs.get(slabs.size() - 1).pinned = true;
        }
    }

    /**
     * Gives the memory of every unpinned slab with no page in use back to the system, if no
     * allocation happened since the previous call; returns the bytes given back. Called periodically
     * (every few seconds), it keeps a busy pool intact and empties an idle one. Pages of a slab given
     * back are gone from the free lists; the next allocation carves a new slab.
     */
    public synchronized long trimIfIdle()
    {
        boolean idle = allocations == allocationsAtLastTrim;
        allocationsAtLastTrim = allocations;
        if (!idle) {
            return 0;
        }
        List<Slab> released = new ArrayList<>();
        for (Slab slab : slabs) {
            if (!slab.pinned && slab.used == 0) {
                released.add(slab);
            }
        }
        if (released.isEmpty()) {
            return 0;
        }
        for (int order = 0; order <= MAX_ORDER; order++) {
            int kept = 0;
            for (int i = 0; i < nrFree[order]; i++) {
                Page page = free[order][i];
                if (!released.contains(page.slab())) {
                    free[order][kept++] = page;
                }
            }
            java.util.Arrays.fill(free[order], kept, nrFree[order], null);
            nrFree[order] = kept;
        }
        slabs.removeAll(released);
        for (Slab slab : released) {
            slabBytes -= SLAB_SIZE;
            PAGES.freePages(slab.address, SLAB_PAGES);
        }
        return (long) released.size() * SLAB_SIZE;
    }

    /** Returns {@code pages[0, n)} to the pool. Freeing a page twice throws. */
    public synchronized void free(Page[] pages, int n)
    {
        for (int i = 0; i < n; i++) {
            Page page = pages[i];
            if (page.isFree()) {
                throw new IllegalStateException("page freed twice");
            }
            usedBytes -= page.size();
            page.slab().used -= page.size();
            push(page);
            pages[i] = null;
        }
        if (n > 0) {
            notifyAll();
        }
    }

    /** Bytes in pages handed out and not yet freed. */
    public synchronized long usedBytes()
    {
        return usedBytes;
    }

    /** Bytes of slab memory held now. */
    public synchronized long slabBytes()
    {
        return slabBytes;
    }

    public long capacity()
    {
        return capacity;
    }

    /** The slabs held now, for registering them with the kernel (io_uring fixed buffers). */
    public synchronized List<ByteBuffer> slabs()
    {
        return slabs.stream().map(slab -> slab.buffer).toList();
    }

    /**
     * The slabs {@link #reserve} carved, which stay for good: the ones a ring may register as fixed
     * buffers at any time, since their memory can never be given back under it.
     */
    public synchronized List<ByteBuffer> pinnedSlabs()
    {
        return slabs.stream().filter(slab -> slab.pinned).map(slab -> slab.buffer).toList();
    }

    /**
     * Drops the free lists; slab memory is released when unreachable (each slab's buffer, which every
     * page's buffer refers to, has a cleaner). Pages still in use stay valid until then.
     */
    @Override
    public synchronized void close()
    {
        for (int order = 0; order <= MAX_ORDER; order++) {
            java.util.Arrays.fill(free[order], null);
            nrFree[order] = 0;
        }
        for (Slab slab : slabs) {
            long address = slab.address;
            CLEANER.register(slab.buffer, () -> PAGES.freePages(address, SLAB_PAGES));
        }
        slabs.clear();
        slabBytes = 0;
    }

    private static int orderFor(long length)
    {
        int order = 0;
        while (order < MAX_ORDER && (long) DirectMemory.PAGE_SIZE << (order + 1) <= length) {
            order++;
        }
        return order;
    }

    private Page take(int order)
    {
        if (nrFree[order] > 0) {
            Page page = free[order][--nrFree[order]];
            free[order][nrFree[order]] = null;
            return page;
        }
        if (order == MAX_ORDER) {
            return carveSlab() ? take(order) : null;
        }
        Page bigger = take(order + 1);
        if (bigger == null) {
            return null;
        }
        int half = bigger.size() / 2;
        ByteBuffer buffer = bigger.buffer();
        push(new Page(buffer.slice(half, half), bigger.address() + half, order, bigger.slab()));
        return new Page(buffer.slice(0, half), bigger.address(), order, bigger.slab());
    }

    private boolean carveSlab()
    {
        if (slabBytes + SLAB_SIZE > roundUpToSlab(capacity)) {
            return false;
        }
        // anonymous mmap, not malloc: unmapping gives the memory back for sure, and it is page-aligned
        long address = PAGES.allocatePages(SLAB_PAGES, PageManager.PROT_READ | PageManager.PROT_WRITE);
        if (address == 0) {
            return false;
        }
        Slab slab = new Slab(address, MemoryIO.getInstance().newDirectByteBuffer(address, SLAB_SIZE));
        slabs.add(slab);
        slabBytes += SLAB_SIZE;
        int size = DirectMemory.PAGE_SIZE << MAX_ORDER;
        for (int offset = 0; offset < SLAB_SIZE; offset += size) {
            push(new Page(slab.buffer.slice(offset, size), address + offset, MAX_ORDER, slab));
        }
        return true;
    }

    private static long roundUpToSlab(long bytes)
    {
        return (bytes + SLAB_SIZE - 1) / SLAB_SIZE * SLAB_SIZE;
    }

    private void push(Page page)
    {
        int order = page.order();
        if (nrFree[order] == free[order].length) {
            free[order] = java.util.Arrays.copyOf(free[order], free[order].length * 2);
        }
        page.setFree(true);
        free[order][nrFree[order]++] = page;
    }

    /** One block of {@link #SLAB_SIZE} bytes, and how much of it is handed out. */
    static final class Slab
    {
        private final long address;
        private final ByteBuffer buffer;
        private long used;
        private boolean pinned;

        Slab(long address, ByteBuffer buffer)
        {
            this.address = address;
            this.buffer = buffer;
        }
    }
}
