package dev.jloop.backend.rbd;

import org.junit.jupiter.api.Test;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestFreeSlots
{
    @Test
    public void holdsEachIndexOnce()
    {
        FreeSlots slots = new FreeSlots(3);
        assertEquals(0, slots.poll());
        assertEquals(1, slots.poll());
        assertEquals(2, slots.poll());
        assertEquals(-1, slots.poll());
        slots.push(1);
        assertEquals(1, slots.take());
        assertEquals(-1, slots.poll());
    }

    /** Threads taking and giving back slots at once: no index is ever held twice, none is lost. */
    @Test
    public void concurrentTakersNeverShareASlot()
            throws Exception
    {
        int count = 8;
        FreeSlots slots = new FreeSlots(count);
        ConcurrentHashMap<Integer, Thread> held = new ConcurrentHashMap<>();
        AtomicReference<String> failure = new AtomicReference<>();
        int threads = 6;
        CountDownLatch done = new CountDownLatch(threads);
        for (int t = 0; t < threads; t++) {
            Thread thread = new Thread(() -> {
                for (int i = 0; i < 200_000; i++) {
                    int index = slots.take();
                    if (held.putIfAbsent(index, Thread.currentThread()) != null) {
                        failure.compareAndSet(null, "slot " + index + " taken twice");
                    }
                    held.remove(index);
                    slots.push(index);
                }
                done.countDown();
            });
            thread.start();
        }
        assertTrue(done.await(120, java.util.concurrent.TimeUnit.SECONDS), "the takers did not finish");
        assertNull(failure.get());
        int free = 0;
        while (slots.poll() >= 0) {
            free++;
        }
        assertEquals(count, free, "every slot is free again");
    }
}
