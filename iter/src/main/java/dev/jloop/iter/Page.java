package dev.jloop.iter;

import java.nio.ByteBuffer;

/**
 * A run of {@code 2^order} contiguous, {@link DirectMemory#PAGE_SIZE}-aligned pages from a
 * {@link PagePool} (the kernel's compound page). Its buffer is direct and its native address fixed.
 *
 * <p>Ownership: whoever allocated the page frees it, exactly once; the buffer's position and limit
 * belong to the current owner; nobody touches a page after freeing it.
 */
public final class Page
{
    private final ByteBuffer buffer;
    private final long address;
    private final int order;
    private final PagePool.Slab slab;
    private boolean free;

    Page(ByteBuffer buffer, long address, int order, PagePool.Slab slab)
    {
        this.buffer = buffer;
        this.address = address;
        this.order = order;
        this.slab = slab;
    }

    /** Direct buffer over the page, capacity {@link #size()}. */
    public ByteBuffer buffer()
    {
        return buffer;
    }

    public long address()
    {
        return address;
    }

    public int order()
    {
        return order;
    }

    public int size()
    {
        return DirectMemory.PAGE_SIZE << order;
    }

    PagePool.Slab slab()
    {
        return slab;
    }

    boolean isFree()
    {
        return free;
    }

    void setFree(boolean free)
    {
        this.free = free;
    }
}
