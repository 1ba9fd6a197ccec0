package dev.jloop.iter;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class TestDirectMemory
{
    @Test
    void allocateAlignedAnySize()
    {
        for (int size : new int[] {0, 1, 4095, 4096, 4097, 12289, 1 << 20}) {
            ByteBuffer buffer = DirectMemory.allocateAligned(size);
            assertEquals(size, buffer.capacity());
            assertEquals(0, buffer.position());
            assertEquals(0, DirectMemory.address(buffer) % DirectMemory.PAGE_SIZE, "start of " + size + " bytes must be page-aligned");
        }
    }

    @Test
    void addressIsOfIndexZero()
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(64);
        long base = DirectMemory.address(buffer);
        assertEquals(base, DirectMemory.address(buffer.duplicate().position(10)), "the position does not move the address");
        assertEquals(base + 10, DirectMemory.address(buffer.slice(10, 20)));
        assertThrows(IllegalArgumentException.class, () -> DirectMemory.address(ByteBuffer.allocate(8)));
    }
}
