package dev.jloop.uring;

import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static java.util.Objects.requireNonNull;

/**
 * A ring of provided buffers ({@code IORING_REGISTER_PBUF_RING}, Linux 5.19+) registered with a
 * {@link Ring} as buffer group {@link #group()}: an operation with {@link IoUring#IOSQE_BUFFER_SELECT}
 * takes the next buffer offered here, and its CQE names it by id ({@link IoUring#CQE_F_BUFFER}, the
 * id in the upper 16 bits of the flags). Buffers are offered with {@link #add} and made visible to the
 * kernel with {@link #publish}; a buffer the kernel took is the caller's until it is added again.
 *
 * <p>Layout ({@code struct io_uring_buf_ring} in {@code include/uapi/linux/io_uring.h}): an array of
 * 16-byte {@code struct io_uring_buf {u64 addr; u32 len; u16 bid; u16 resv}}, page-aligned, whose
 * first entry's {@code resv} is the ring's 16-bit tail; the kernel owns the head. The tail is stored
 * with release semantics after the entries, as liburing's {@code io_uring_buf_ring_advance} does.
 *
 * <p>Owns the ring's memory, not the buffers'; the caller keeps those valid until {@link #close},
 * which unregisters the group. Used by the ring's submitting thread only.
 */
public final class BufferRing
        implements AutoCloseable
{
    private static final VarHandle SHORT = MethodHandles.byteBufferViewVarHandle(short[].class, ByteOrder.nativeOrder());
    private static final int ENTRY_SIZE = 16;
    private static final int TAIL_OFFSET = 14;
    private static final int PAGE_SIZE = 4096;
    /** {@code sizeof(struct io_uring_buf_reg)}. */
    private static final int REG_SIZE = 40;

    private final Ring ring;
    private final int group;
    private final int entries;
    private final ByteBuffer memory;
    private int tail;
    private int added;
    private boolean closed;

    private BufferRing(Ring ring, int group, int entries, ByteBuffer memory)
    {
        this.ring = ring;
        this.group = group;
        this.entries = entries;
        this.memory = memory;
    }

    /**
     * Registers an empty ring of {@code entries} (a power of two, at most 32768) as buffer group
     * {@code group} of {@code ring}. Fails with EINVAL on kernels before 5.19.
     */
    public static BufferRing register(Ring ring, int group, int entries)
            throws NativeIoException
    {
        requireNonNull(ring, "ring is null");
        if (entries <= 0 || entries > 32768 || Integer.bitCount(entries) != 1) {
            throw new IllegalArgumentException("entries must be a power of two up to 32768: " + entries);
        }
        if (group < 0 || group > 0xffff) {
            throw new IllegalArgumentException("group must fit 16 bits: " + group);
        }
        int size = entries * ENTRY_SIZE;
        // alignedSlice rounds the end down to a page too: whole pages plus one of slack keep the whole array
        int pages = (size + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        ByteBuffer memory = ByteBuffer.allocateDirect(pages + PAGE_SIZE).alignedSlice(PAGE_SIZE).limit(size).slice().order(ByteOrder.nativeOrder());
        Pointer reg = Memory.allocateDirect(Native.RUNTIME, REG_SIZE, true);
        reg.putLong(0, address(memory));
        reg.putInt(8, entries);
        reg.putShort(12, (short) group);
        Errors.check("io_uring_register(IORING_REGISTER_PBUF_RING)", Native.ioUringRegister(ring.fd(), IoUring.REGISTER_PBUF_RING, reg, 1));
        return new BufferRing(ring, group, entries, memory);
    }

    public int group()
    {
        return group;
    }

    public int entries()
    {
        return entries;
    }

    /** Offers {@code length} bytes at {@code address} as buffer {@code bufferId}; the kernel sees it after {@link #publish}. */
    public void add(long address, int length, int bufferId)
    {
        int at = ((tail + added) & (entries - 1)) * ENTRY_SIZE;
        memory.putLong(at, address);
        memory.putInt(at + 8, length);
        // not the entry's last two bytes: in entry 0 they are the ring's tail
        memory.putShort(at + 12, (short) bufferId);
        added++;
    }

    /** Makes the buffers {@link #add}ed since the last call visible to the kernel. */
    public void publish()
    {
        if (added == 0) {
            return;
        }
        tail += added;
        added = 0;
        SHORT.setRelease(memory, TAIL_OFFSET, (short) tail);
    }

    /** Unregisters the group; the kernel no longer takes its buffers. Idempotent; before the ring's close. */
    @Override
    public void close()
            throws NativeIoException
    {
        if (closed) {
            return;
        }
        closed = true;
        Pointer reg = Memory.allocateDirect(Native.RUNTIME, REG_SIZE, true);
        reg.putShort(12, (short) group);
        Errors.check("io_uring_register(IORING_UNREGISTER_PBUF_RING)", Native.ioUringRegister(ring.fd(), IoUring.UNREGISTER_PBUF_RING, reg, 1));
    }

    @Override
    public String toString()
    {
        return "BufferRing{group=" + group + ", entries=" + entries + ", tail=" + tail + "}";
    }

    private static long address(ByteBuffer buffer)
    {
        return Native.RUNTIME.getMemoryManager().newPointer(buffer).address();
    }
}
