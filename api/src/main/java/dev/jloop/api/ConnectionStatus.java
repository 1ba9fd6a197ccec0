package dev.jloop.api;

import static java.util.Objects.requireNonNull;

/**
 * One client of a frontend as {@code jloop status} and the metrics show it, at the moment it was asked.
 *
 * @param client the client's address ({@code 127.0.0.1:41822}, {@code unix:/run/nbd.sock}, {@code stdio})
 * @param export the export it uses; {@code null} while it is still in the handshake
 * @param transport {@code tcp}, {@code unix} or {@code stdio}
 * @param tls whether the connection is encrypted
 * @param inFlight its requests taken and not yet answered
 * @param requests its requests answered or in flight so far
 * @param bytes the payload bytes of its reads and writes so far
 * @param errors its requests answered with an error so far
 */
public record ConnectionStatus(String client, String export, String transport, boolean tls, int inFlight, long requests, long bytes, long errors)
{
    public ConnectionStatus
    {
        requireNonNull(client, "client is null");
        requireNonNull(transport, "transport is null");
    }
}
