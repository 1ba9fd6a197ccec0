package dev.jloop.uring;

/**
 * Receives one completion queue entry ({@code struct io_uring_cqe}). Hot path: primitives only, called
 * on the thread that reaps, in completion order.
 */
@FunctionalInterface
public interface CompletionHandler
{
    /**
     * @param userData the SQE's {@code user_data}
     * @param res the operation's result: bytes or a count ({@code >= 0}), or {@code -errno}
     * @param flags {@code IORING_CQE_F_*}
     */
    void handle(long userData, int res, int flags);
}
