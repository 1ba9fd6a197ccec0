package dev.jloop.iter;

import dev.jloop.api.IovIter.Direction;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;

class TestBvecIter
{
    /**
     * The chunks of one structured NBD read are separate bios whose iterators share the pages at
     * their boundaries, and the nio backend reads both at once on two threads. A segment buffer that
     * was the page's own buffer let one read move the other's position and limit: it read past its
     * chunk and failed with "advance by N with M left".
     */
    @Test
    void segmentBuffersOfTwoIteratorsOverOnePageAreEachTheirOwn()
            throws InterruptedException
    {
        try (PagePool pool = new PagePool(PagePool.SLAB_SIZE)) {
            int length = 2 * DirectMemory.PAGE_SIZE;
            Page[] pages = new Page[PagePool.maxPages(length)];
            int n = pool.allocate(length, pages);
            assertEquals(1, n, "one page of order 1");
            BvecIter first = new BvecIter().reset(Direction.DEST, pages, n, DirectMemory.PAGE_SIZE);
            BvecIter second = new BvecIter().reset(Direction.DEST, pages, n, length);
            second.advance(DirectMemory.PAGE_SIZE);

            ByteBuffer mine = first.segmentBuffer(0);
            ByteBuffer theirs = second.segmentBuffer(0);
            assertNotSame(mine, theirs);
            assertEquals(0, mine.position(), "the other iterator moved this one's buffer");
            assertEquals(DirectMemory.PAGE_SIZE, mine.limit());
            assertEquals(DirectMemory.PAGE_SIZE, theirs.position());
            assertEquals(length, theirs.limit());
            assertEquals(DirectMemory.address(pages[0].buffer()), DirectMemory.address(mine), "a view of the page itself");

            mine.put((byte) 7);
            assertEquals(7, pages[0].buffer().get(0), "writes reach the page");
            pool.free(pages, n);
        }
    }
}
