package dev.jloop.iter;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestPagePool
{
    private static final int PAGE = DirectMemory.PAGE_SIZE;

    @Test
    void pagesAreAlignedAndCoverTheLength()
            throws InterruptedException
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            for (long length : new long[] {1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE, 1 << 20, (1 << 20) + 5}) {
                Page[] pages = new Page[PagePool.maxPages(length)];
                int n = pool.allocate(length, pages);
                long covered = 0;
                for (int i = 0; i < n; i++) {
                    Page page = pages[i];
                    assertEquals(0, page.address() % PAGE, "page address must be 4096-aligned");
                    assertEquals(0, DirectMemory.address(page.buffer()) % PAGE);
                    assertEquals(page.address(), DirectMemory.address(page.buffer()), "page address is its buffer's");
                    assertEquals(PAGE << page.order(), page.size());
                    assertEquals(page.size(), page.buffer().capacity());
                    assertTrue(page.buffer().isDirect());
                    covered += page.size();
                }
                assertTrue(covered >= length, "pages cover " + covered + " of " + length);
                assertTrue(covered - length < PAGE, "more than a page of waste for " + length + ": " + covered);
                assertEquals(covered, pool.usedBytes());
                pool.free(pages, n);
                assertEquals(0, pool.usedBytes());
            }
            assertEquals(1, pool.slabs().size(), "freed pages are reused: no second slab");
        }
    }

    @Test
    void reserveCarvesSlabsUpToTheCapacity()
            throws Exception
    {
        PagePool pool = new PagePool(3L * PagePool.SLAB_SIZE);
        pool.reserve(2L * PagePool.SLAB_SIZE - 1);
        assertEquals(2, pool.slabs().size());
        assertEquals(2L * PagePool.SLAB_SIZE, pool.slabBytes());
        assertEquals(0, pool.usedBytes());
        pool.reserve(100L * PagePool.SLAB_SIZE);
        assertEquals(3, pool.slabs().size(), "never beyond the capacity");
        Page[] pages = new Page[PagePool.maxPages(PagePool.SLAB_SIZE)];
        int n = pool.allocate(PagePool.SLAB_SIZE, pages);
        assertEquals(3, pool.slabs().size(), "reserved slabs serve allocations");
        pool.free(pages, n);
    }

    @Test
    void freshPoolHoldsNoMemory()
            throws Exception
    {
        try (PagePool pool = new PagePool(1L << 30)) {
            assertEquals(0, pool.slabBytes(), "a pool carves slabs only when pages are asked for");
            assertEquals(List.of(), pool.slabs());
        }
    }

    @Test
    void idlePoolGivesBackSlabsWithNoPageInUse()
            throws Exception
    {
        try (PagePool pool = new PagePool(4L * PagePool.SLAB_SIZE)) {
            Page[] kept = new Page[1];
            assertEquals(1, pool.tryAllocate(PAGE, kept));
            kept[0].buffer().putLong(0, 0x1234_5678_9abc_def0L);
            Page[] fill = new Page[PagePool.maxPages(2L * PagePool.SLAB_SIZE)];
            int n = pool.tryAllocate(2L * PagePool.SLAB_SIZE, fill);
            assertEquals(3, pool.slabs().size());
            List<Long> slabAddresses = pool.slabs().stream().map(DirectMemory::address).toList();
            pool.free(fill, n);

            assertEquals(0, pool.trimIfIdle(), "allocations since the last call: the pool is busy, nothing is given back");
            assertEquals(3L * PagePool.SLAB_SIZE, pool.slabBytes());
            assertEquals(2L * PagePool.SLAB_SIZE, pool.trimIfIdle(), "idle: the two slabs with no page in use go back");
            assertEquals(PagePool.SLAB_SIZE, pool.slabBytes());
            assertEquals(1, pool.slabs().size());
            long keptSlab = DirectMemory.address(pool.slabs().get(0));
            assertTrue(contains(keptSlab, kept[0].address()), "the slab with a page in use stays");
            assertEquals(0x1234_5678_9abc_def0L, kept[0].buffer().getLong(0), "a page in use keeps its content");
            for (long address : slabAddresses) {
                assertEquals(address == keptSlab, isMapped(address), "slab at " + Long.toHexString(address) + " is mapped only if kept");
            }

            pool.free(kept, 1);
            assertEquals(PagePool.SLAB_SIZE, pool.trimIfIdle(), "still idle: the last slab goes too");
            assertEquals(0, pool.slabBytes());
            assertEquals(0, pool.usedBytes());

            Page[] again = new Page[PagePool.maxPages(3L * PagePool.SLAB_SIZE)];
            int m = pool.tryAllocate(3L * PagePool.SLAB_SIZE, again);
            assertTrue(m > 0, "a trimmed pool grows again, up to its capacity");
            for (int i = 0; i < m; i++) {
                again[i].buffer().put(0, (byte) i);
            }
            pool.free(again, m);
        }
    }

    private static boolean contains(long slab, long address)
    {
        return address >= slab && address < slab + PagePool.SLAB_SIZE;
    }

    /** Whether any mapping of this process covers {@code address}, from /proc/self/maps. */
    private static boolean isMapped(long address)
            throws Exception
    {
        for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
            String[] range = line.substring(0, line.indexOf(' ')).split("-");
            if (Long.compareUnsigned(address, Long.parseUnsignedLong(range[0], 16)) >= 0
                    && Long.compareUnsigned(address, Long.parseUnsignedLong(range[1], 16)) < 0) {
                return true;
            }
        }
        return false;
    }

    @Test
    void reservedSlabsAreNeverGivenBack()
    {
        try (PagePool pool = new PagePool(4L * PagePool.SLAB_SIZE)) {
            pool.reserve(2L * PagePool.SLAB_SIZE);
            Page[] pages = new Page[PagePool.maxPages(3L * PagePool.SLAB_SIZE)];
            int n = pool.tryAllocate(3L * PagePool.SLAB_SIZE, pages);
            assertEquals(3, pool.slabs().size());
            List<ByteBuffer> pinned = pool.pinnedSlabs();
            assertEquals(2, pinned.size(), "only reserved slabs may be registered for good");
            assertSame(pool.slabs().get(0), pinned.get(0));
            assertSame(pool.slabs().get(1), pinned.get(1));
            pool.free(pages, n);
            pool.trimIfIdle();
            pool.trimIfIdle();
            assertEquals(2L * PagePool.SLAB_SIZE, pool.slabBytes(), "pinned slabs stay; the one carved on demand goes");
        }
    }

    @Test
    void largeRequestIsFewSegments()
            throws InterruptedException
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            Page[] pages = new Page[PagePool.maxPages(1 << 20)];
            int n = pool.allocate(1 << 20, pages);
            assertEquals(1, n, "a 1 MiB request is one page of the largest order");
            pool.free(pages, n);
        }
    }

    @Test
    void boundedCapacityAllOrNothing()
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            Page[] first = new Page[PagePool.maxPages(PagePool.SLAB_SIZE - 2 * PAGE)];
            int n = pool.tryAllocate(PagePool.SLAB_SIZE - 2 * PAGE, first);
            assertTrue(n > 0);
            long used = pool.usedBytes();
            Page[] second = new Page[PagePool.maxPages(3 * PAGE)];
            assertEquals(-1, pool.tryAllocate(3 * PAGE, second), "three pages do not fit in the two left");
            assertEquals(used, pool.usedBytes(), "a failed allocation takes nothing");
            for (Page page : second) {
                assertNull(page, "a failed allocation leaves no pages behind");
            }
            int m = pool.tryAllocate(2 * PAGE, second);
            assertTrue(m > 0, "the two pages left are still there");
            assertEquals(PagePool.SLAB_SIZE, pool.usedBytes());
            assertEquals(-1, pool.tryAllocate(1, new Page[1]));
            assertEquals(PagePool.SLAB_SIZE, pool.slabBytes(), "never more than the capacity");
            pool.free(first, n);
            pool.free(second, m);
            assertEquals(0, pool.usedBytes());
        }
    }

    @Test
    void requestLargerThanThePoolFails()
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            assertThrows(IllegalArgumentException.class, () -> pool.allocate(PagePool.SLAB_SIZE + 1L, new Page[PagePool.maxPages(PagePool.SLAB_SIZE + 1L)]));
            assertThrows(IllegalArgumentException.class, () -> pool.tryAllocate(-1, new Page[1]));
        }
    }

    @Test
    void tooSmallPageArrayFailsWithoutLeaking()
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            Page[] pages = new Page[1];
            assertThrows(IllegalArgumentException.class, () -> pool.tryAllocate(3 * PAGE, pages));
            assertEquals(0, pool.usedBytes());
        }
    }

    @Test
    void doubleFreeThrows()
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            Page[] pages = new Page[1];
            assertEquals(1, pool.tryAllocate(PAGE, pages));
            Page page = pages[0];
            pool.free(pages, 1);
            assertNull(pages[0], "free clears the caller's array");
            assertThrows(IllegalStateException.class, () -> pool.free(new Page[] {page}, 1));
            assertEquals(0, pool.usedBytes());
        }
    }

    @Test
    void blockingAllocateWakesWhenPagesAreFreed()
            throws Exception
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            Page[] all = new Page[PagePool.maxPages(PagePool.SLAB_SIZE)];
            int n = pool.tryAllocate(PagePool.SLAB_SIZE, all);
            assertTrue(n > 0);
            CompletableFuture<Integer> waiter = new CompletableFuture<>();
            Page[] wanted = new Page[4];
            Thread thread = new Thread(() -> {
                try {
                    waiter.complete(pool.allocate(2 * PAGE, wanted));
                }
                catch (Throwable e) {
                    waiter.completeExceptionally(e);
                }
            });
            thread.start();
            // Whether or not the thread already waits, it can only finish after the free below.
            assertFalse(waiter.isDone());
            pool.free(all, n);
            assertTrue(waiter.get(30, TimeUnit.SECONDS) > 0);
            thread.join();
            pool.free(wanted, waiter.get());
            assertEquals(0, pool.usedBytes());
        }
    }

    /** Random allocate/free sequences: live pages never overlap, and accounting returns to zero. */
    @Property(tries = 100)
    void livePagesNeverOverlap(@ForAll @Size(max = 40) List<@IntRange(min = 0, max = 300_000) Integer> lengths)
    {
        try (PagePool pool = new PagePool(2L * PagePool.SLAB_SIZE)) {
            List<Page[]> live = new ArrayList<>();
            List<Integer> counts = new ArrayList<>();
            TreeMap<Long, Long> ranges = new TreeMap<>();
            long used = 0;
            for (int length : lengths) {
                if (length % 3 == 0 && !live.isEmpty()) {
                    int victim = length % live.size();
                    Page[] pages = live.remove(victim);
                    int n = counts.remove(victim);
                    for (int i = 0; i < n; i++) {
                        ranges.remove(pages[i].address());
                        used -= pages[i].size();
                    }
                    pool.free(pages, n);
                    assertEquals(used, pool.usedBytes());
                    continue;
                }
                Page[] pages = new Page[PagePool.maxPages(length)];
                int n = pool.tryAllocate(length, pages);
                if (n < 0) {
                    assertEquals(used, pool.usedBytes(), "a failed allocation takes nothing");
                    continue;
                }
                for (int i = 0; i < n; i++) {
                    long start = pages[i].address();
                    long end = start + pages[i].size();
                    var below = ranges.floorEntry(start);
                    assertTrue(below == null || below.getValue() <= start, "page overlaps a live page");
                    var above = ranges.ceilingEntry(start);
                    assertTrue(above == null || above.getKey() >= end, "page overlaps a live page");
                    ranges.put(start, end);
                    used += pages[i].size();
                }
                assertEquals(used, pool.usedBytes());
                live.add(pages);
                counts.add(n);
            }
            for (int k = 0; k < live.size(); k++) {
                pool.free(live.get(k), counts.get(k));
            }
            assertEquals(0, pool.usedBytes());
            assertTrue(pool.slabBytes() <= 2L * PagePool.SLAB_SIZE);
        }
    }
}
