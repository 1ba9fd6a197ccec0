package dev.jloop.nbd;

/**
 * Whether a connection loop whose client sends one request at a time waits for the next request by busy
 * polling ({@link dev.jloop.uring.BusyPoll}) or asleep in {@code io_uring_enter}: it measures both on the
 * connection and keeps the faster. Which one wins depends on the machine, not on jloop: where a core is
 * free for the watching thread, polling takes the wake-up off every request (1.2 to 1.6 times the
 * requests a second of sleeping, side by side on one 2-vCPU machine); where the two vCPUs share the
 * host's time, the watching vCPU takes it from the client's and polling halves them (docs/nbd.md,
 * "Busy polling").
 *
 * <p>The requests of the client's one-at-a-time stretches are counted in epochs of {@value #EPOCH}. A
 * trial runs four epochs, polling, sleeping, sleeping, polling (so that a drift of the machine's speed
 * falls on both alike), and the loop then keeps the mode that took less time for its two for
 * {@value #HOLD} epochs before the next trial. Polling, which costs a core while it watches, must be
 * faster by {@value #MARGIN_PERCENT} % to be kept. An epoch that a deeper stretch or a pause of the
 * client ({@link #GAP_NANOS} between two requests) interrupts is measured again.
 *
 * <p>Loop thread only; the caller reads the clock, so that tests can give it theirs.
 */
final class PollTuner
{
    static final int EPOCH = 256;
    static final int HOLD = 128;
    static final int MARGIN_PERCENT = 10;
    /** A client that sends nothing for this long has paused; the time is not the wait mode's. */
    static final long GAP_NANOS = 2_000_000;
    private static final int TRIAL_EPOCHS = 4;

    /** Epochs done since the last trial began: the first {@link #TRIAL_EPOCHS} are the trial. */
    private int epochs;
    private final long[] trialNanos = new long[2];
    private boolean polling = true;
    private int counted;
    private long epochStart;
    private long last;

    /** Whether the loop polls while it waits for the next request now. */
    boolean polling()
    {
        return polling;
    }

    /** A request of a one-at-a-time stretch has started at {@code now} (nanoseconds). */
    void started(long now)
    {
        if (counted > 0 && now - last > GAP_NANOS) {
            counted = 0;
        }
        last = now;
        if (counted == 0) {
            epochStart = now;
        }
        if (++counted <= EPOCH) {
            return;
        }
        // this request begins the next epoch: the last EPOCH took now - epochStart
        if (epochs < TRIAL_EPOCHS) {
            trialNanos[polling ? 1 : 0] += now - epochStart;
        }
        epochs++;
        if (epochs == TRIAL_EPOCHS) {
            polling = trialNanos[1] * 100 < trialNanos[0] * (100 - MARGIN_PERCENT);
        }
        else if (epochs == TRIAL_EPOCHS + HOLD) {
            epochs = 0;
            trialNanos[0] = 0;
            trialNanos[1] = 0;
            polling = true;
        }
        else if (epochs < TRIAL_EPOCHS) {
            // polling, sleeping, sleeping, polling
            polling = epochs == TRIAL_EPOCHS - 1;
        }
        counted = 1;
        epochStart = now;
    }

    /** A request found others in flight: the epoch under way is not one of the one-at-a-time kind. */
    void interrupted()
    {
        counted = 0;
    }
}
