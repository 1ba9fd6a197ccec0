package dev.jloop.loop.stats;

import dev.jloop.api.Bio;

/**
 * What a loop device counts, per {@link Bio.Op}: every request that ends, in the device, where every
 * frontend's requests pass. Read by the metrics endpoint and {@code jloop status}; never reset.
 */
public final class DeviceStats
{
    private static final Bio.Op[] OPS = Bio.Op.values();

    private final OpStats[] ops = new OpStats[OPS.length];

    public DeviceStats()
    {
        for (int i = 0; i < ops.length; i++) {
            ops[i] = new OpStats();
        }
    }

    /** A bio ended with {@code error} (0 or {@code -errno}), {@code latencyNanos} after it was submitted. */
    public void ended(Bio bio, int error, long latencyNanos)
    {
        Bio.Op op = bio.op();
        if (op == null) {
            return;
        }
        ops[op.ordinal()].record(latencyNanos, op == Bio.Op.FLUSH ? 0 : bio.length(), error);
    }

    public OpStats op(Bio.Op op)
    {
        return ops[op.ordinal()];
    }
}
