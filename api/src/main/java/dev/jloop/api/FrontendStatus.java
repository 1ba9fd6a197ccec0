package dev.jloop.api;

import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * What a frontend shows of itself to {@code jloop status} and the metrics ({@link Frontend#status()}).
 *
 * @param connections its clients now (an NBD server's connections; empty for a kernel device)
 * @param pageBytesInUse bytes of its request page pool holding requests now; 0 without a pool
 * @param pageBytesIdle bytes of that pool allocated and free for the next requests
 * @param queueDepths requests in flight on each of its hardware queues now (ublk); empty without queues
 */
public record FrontendStatus(List<ConnectionStatus> connections, long pageBytesInUse, long pageBytesIdle, List<Integer> queueDepths)
{
    public static final FrontendStatus NONE = new FrontendStatus(List.of(), 0, 0, List.of());

    public FrontendStatus
    {
        connections = List.copyOf(requireNonNull(connections, "connections is null"));
        queueDepths = List.copyOf(requireNonNull(queueDepths, "queueDepths is null"));
    }
}
