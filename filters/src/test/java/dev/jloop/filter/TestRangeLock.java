package dev.jloop.filter;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Who goes when, in the lock that orders read-modify-writes. */
class TestRangeLock
{
    private final RangeLock lock = new RangeLock();
    private final List<String> ran = new ArrayList<>();

    @Test
    void sharedRangesGoTogetherAndExclusiveOnesWaitForOverlaps()
    {
        RangeLock.Range a = acquire("a", 0, 100, false);
        RangeLock.Range b = acquire("b", 50, 150, false);
        RangeLock.Range c = acquire("c", 90, 95, true);
        RangeLock.Range d = acquire("d", 200, 300, true);
        assertEquals(List.of("a", "b", "d"), ran, "shared ranges overlap freely; an exclusive one waits for them");
        lock.release(a);
        assertEquals(List.of("a", "b", "d"), ran, "b still holds c's bytes");
        lock.release(b);
        assertEquals(List.of("a", "b", "d", "c"), ran);
        lock.release(c);
        lock.release(d);
        assertEquals(0, lock.size());
    }

    @Test
    void aWaitingExclusiveRangeIsNotOvertakenByLaterSharedOnes()
    {
        RangeLock.Range first = acquire("first", 0, 10, false);
        RangeLock.Range exclusive = acquire("exclusive", 0, 10, true);
        RangeLock.Range later = acquire("later", 5, 15, false);
        RangeLock.Range elsewhere = acquire("elsewhere", 20, 30, false);
        assertEquals(List.of("first", "elsewhere"), ran);
        lock.release(first);
        assertEquals(List.of("first", "elsewhere", "exclusive"), ran);
        lock.release(exclusive);
        assertEquals(List.of("first", "elsewhere", "exclusive", "later"), ran);
        lock.release(later);
        lock.release(elsewhere);
        assertEquals(0, lock.size());
    }

    private RangeLock.Range acquire(String name, long start, long end, boolean exclusive)
    {
        RangeLock.Range range = new RangeLock.Range(start, end, exclusive);
        lock.acquire(range, () -> ran.add(name));
        return range;
    }
}
