package dev.jloop.loop.stats;

import dev.jloop.loop.LoopDevice;

import static java.util.Objects.requireNonNull;

/**
 * One export as the metrics and {@code jloop status} show it: its names, and the device that counts
 * its requests.
 */
public record ExportStats(String export, String file, String backend, String frontend, LoopDevice device)
{
    public ExportStats
    {
        requireNonNull(export, "export is null");
        requireNonNull(file, "file is null");
        requireNonNull(backend, "backend is null");
        requireNonNull(frontend, "frontend is null");
        requireNonNull(device, "device is null");
    }

    /** The device's counters; every device a server serves counts. */
    public DeviceStats stats()
    {
        return requireNonNull(device.stats(), "the device counts nothing");
    }
}
