package dev.jloop.loop.stats;

import dev.jloop.api.FrontendStatus;

import java.util.List;

/** A running server as the metrics and {@code jloop status} read it, whenever they are asked. */
public interface ServerStats
{
    /** The exports served, in the order they were given. */
    List<ExportStats> exports();

    /** The frontend's clients, page pool and queues now. */
    FrontendStatus frontend();
}
