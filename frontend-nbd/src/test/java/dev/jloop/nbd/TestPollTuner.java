package dev.jloop.nbd;

import org.junit.jupiter.api.Test;

import static dev.jloop.nbd.PollTuner.EPOCH;
import static dev.jloop.nbd.PollTuner.HOLD;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestPollTuner
{
    /** A client whose requests come {@code pollingNanos} apart while the loop polls, {@code sleepingNanos} while it sleeps. */
    private static final class Client
    {
        final PollTuner tuner = new PollTuner();
        long pollingNanos;
        long sleepingNanos;
        long now = 1_000_000_000L;
        int polledRequests;

        Client(long pollingNanos, long sleepingNanos)
        {
            this.pollingNanos = pollingNanos;
            this.sleepingNanos = sleepingNanos;
        }

        void requests(int count)
        {
            for (int i = 0; i < count; i++) {
                tuner.started(now);
                if (tuner.polling()) {
                    polledRequests++;
                }
                now += tuner.polling() ? pollingNanos : sleepingNanos;
            }
        }

        /** Through the trial and into the hold: every epoch of the trial, and one request more. */
        void trial()
        {
            requests(4 * EPOCH + 1);
        }
    }

    @Test
    void pollingStaysWhereItAnswersSooner()
    {
        Client client = new Client(30_000, 60_000);
        client.trial();
        assertTrue(client.tuner.polling());
        client.polledRequests = 0;
        client.requests(HOLD * EPOCH / 2);
        assertEquals(HOLD * EPOCH / 2, client.polledRequests, "every request of the hold polled");
    }

    @Test
    void sleepingWinsWherePollingTakesTheClientsTime()
    {
        // the machine of docs/nbd.md: polling halves the requests a second
        Client client = new Client(80_000, 40_000);
        assertTrue(client.tuner.polling(), "the trial begins by polling");
        client.trial();
        assertFalse(client.tuner.polling());
        client.polledRequests = 0;
        client.requests(HOLD * EPOCH / 2);
        assertEquals(0, client.polledRequests);
    }

    @Test
    void pollingMustWinByTheMargin()
    {
        // 5 % faster is not worth a core
        Client client = new Client(38_000, 40_000);
        client.trial();
        assertFalse(client.tuner.polling());
        // 20 % faster is
        client = new Client(32_000, 40_000);
        client.trial();
        assertTrue(client.tuner.polling());
    }

    @Test
    void theTrialPollsHalfItsEpochs()
    {
        Client client = new Client(40_000, 40_000);
        client.requests(4 * EPOCH);
        assertEquals(2 * EPOCH, client.polledRequests);
    }

    @Test
    void aNewTrialFollowsEveryHoldAndFollowsTheMachine()
    {
        Client client = new Client(80_000, 40_000);
        client.trial();
        assertFalse(client.tuner.polling());
        // the machine changes: a core is free now
        client.pollingNanos = 20_000;
        client.requests(HOLD * EPOCH - 1);
        assertFalse(client.tuner.polling(), "still the hold");
        client.requests(1);
        assertTrue(client.tuner.polling(), "the next trial begins by polling");
        client.requests(4 * EPOCH);
        assertTrue(client.tuner.polling(), "polling won the new trial");
        client.polledRequests = 0;
        client.requests(EPOCH);
        assertEquals(EPOCH, client.polledRequests);
    }

    @Test
    void aDeeperStretchVoidsTheEpochUnderWay()
    {
        Client client = new Client(80_000, 40_000);
        // most of the polling epoch, then requests in parallel: that epoch starts over
        client.requests(EPOCH - 10);
        client.tuner.interrupted();
        // the repeated polling epoch is fast: had the void one counted, its time would not be all fast
        client.pollingNanos = 10_000;
        client.requests(EPOCH + 1);
        assertFalse(client.tuner.polling(), "the polling epoch is done, the sleeping ones begin");
        client.requests(2 * EPOCH);
        client.pollingNanos = 40_000;
        client.requests(EPOCH);
        // polling: EPOCH x (10 + 40) us, sleeping: EPOCH x (40 + 40) us; with the 246 void requests at
        // 80 us in the first epoch, polling would have lost
        assertTrue(client.tuner.polling());
    }

    @Test
    void aPauseOfTheClientIsNotCounted()
    {
        Client client = new Client(30_000, 60_000);
        // a pause of a second in each polling epoch: counted, polling would lose
        client.requests(EPOCH / 2);
        client.now += 1_000_000_000L;
        client.requests(3 * EPOCH + EPOCH / 2);
        client.now += 1_000_000_000L;
        client.requests(EPOCH + 2);
        assertTrue(client.tuner.polling());
    }
}
