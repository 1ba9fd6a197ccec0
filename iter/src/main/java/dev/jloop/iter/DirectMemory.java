package dev.jloop.iter;

import jnr.ffi.provider.MemoryManager;

import java.nio.ByteBuffer;

/** Native addresses of direct buffers, and page-aligned direct allocation. */
public final class DirectMemory
{
    public static final int PAGE_SIZE = 4096;

    private static final MemoryManager MEMORY = jnr.ffi.Runtime.getSystemRuntime().getMemoryManager();

    private DirectMemory() {}

    /** Native address of {@code buffer}'s index 0; the buffer must be direct. */
    public static long address(ByteBuffer buffer)
    {
        if (!buffer.isDirect()) {
            throw new IllegalArgumentException("not a direct buffer");
        }
        // jnr's newPointer(ByteBuffer) points at the buffer's position; a duplicate at 0 gives index 0.
        return MEMORY.newPointer(buffer.duplicate().position(0)).address();
    }

    /**
     * A direct buffer of {@code size} bytes whose start is aligned to {@link #PAGE_SIZE}, as O_DIRECT
     * needs. Its memory is freed when the buffer becomes unreachable.
     */
    public static ByteBuffer allocateAligned(int size)
    {
        // alignedSlice() also rounds the end down to the alignment, so reserve whole pages plus one for the start.
        long pages = ((long) size + PAGE_SIZE - 1) / PAGE_SIZE;
        return ByteBuffer.allocateDirect(Math.toIntExact((pages + 1) * PAGE_SIZE)).alignedSlice(PAGE_SIZE).limit(size).slice();
    }
}
