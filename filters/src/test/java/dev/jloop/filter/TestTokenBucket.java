package dev.jloop.filter;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The bucket's arithmetic, on a clock the test moves. */
class TestTokenBucket
{
    private static final long SECOND = 1_000_000_000L;
    private static final long RATE = 8000;

    @Test
    void startsFullThenWaitsForEveryBitBeyondTheBurst()
    {
        long t = 1_000 * SECOND;
        TokenBucket bucket = new TokenBucket(RATE, SECOND / 2, t);
        assertEquals(0, bucket.take(RATE / 2, t), "half a second's worth: the burst");
        assertEquals(SECOND, bucket.take(RATE, t), "a second more waits a second");
        assertEquals(2 * SECOND, bucket.take(RATE, t), "and the next one behind it");
        assertEquals(SECOND / 2, bucket.take(RATE, t + 5 * SECOND / 2), "once the bucket is full again it holds half of it");
    }

    @Test
    void refillsAtTheRateUpToTheBurst()
    {
        long t = -7 * SECOND;
        TokenBucket bucket = new TokenBucket(RATE, SECOND, t);
        assertEquals(0, bucket.take(RATE, t));
        assertEquals(0, bucket.take(RATE / 4, t + SECOND / 4), "a quarter second refilled a quarter");
        assertEquals(SECOND / 4, bucket.take(RATE / 2, t + SECOND / 2), "then it is short by a quarter");
        t += 100 * SECOND;
        assertEquals(0, bucket.take(RATE, t), "a long pause fills it");
        assertEquals(SECOND / 8, bucket.take(RATE / 8, t), "but no more than full");
    }

    @Test
    void aRequestBiggerThanTheBucketWaitsForTheRest()
    {
        TokenBucket bucket = new TokenBucket(RATE, SECOND, 0);
        assertEquals(2 * SECOND, bucket.take(3 * RATE, 0));
    }

    @Test
    void refundedBitsServeTheNextRequest()
    {
        TokenBucket bucket = new TokenBucket(RATE, 0, 0);
        assertEquals(SECOND, bucket.take(RATE, 0));
        bucket.refund(RATE / 2);
        assertEquals(SECOND, bucket.take(RATE / 2, 0), "the refund made room for half of it");
        bucket.refund(100 * RATE);
        assertEquals(SECOND / 4, bucket.take(RATE / 4, 0), "no more than full, even with a refund");
    }

    @Test
    void adjustingKeepsTheBitsUpToTheNewCapacity()
    {
        TokenBucket unlimited = new TokenBucket(0, SECOND, 0);
        assertEquals(TokenBucket.UNLIMITED, unlimited.take(1L << 40, 0));
        assertEquals(0, unlimited.adjust(RATE, 5 * SECOND));
        assertEquals(0, unlimited.take(RATE, 5 * SECOND), "a limit set where there was none starts full");

        TokenBucket bucket = new TokenBucket(RATE, SECOND, 0);
        assertEquals(RATE, bucket.adjust(RATE / 4, 0));
        assertEquals(0, bucket.take(RATE / 4, 0), "lowered: full at the new capacity");
        assertEquals(SECOND, bucket.take(RATE / 4, 0), "and no more");

        TokenBucket indebted = new TokenBucket(RATE, 0, 0);
        assertEquals(2 * SECOND, indebted.take(2 * RATE, 0));
        indebted.adjust(2 * RATE, 0);
        assertEquals(SECOND + SECOND / 2, indebted.take(RATE, 0), "two seconds' debt at the old rate is one at the new");

        assertEquals(2 * RATE, indebted.adjust(0, 0));
        assertEquals(TokenBucket.UNLIMITED, indebted.take(RATE, 0), "0 lifts the limit");
    }
}
