package dev.jloop.api;

/**
 * Completion of a {@link Kiocb}, the kernel's {@code ki_complete}. Hot path: primitives only.
 */
@FunctionalInterface
public interface KiocbCompletion
{
    /**
     * Called exactly once per submission, on the backend's completion thread (or the submitting
     * thread for a synchronous result). Must not block. From this call on the kiocb belongs to the
     * callee again: it may resubmit it or free it.
     *
     * @param res bytes transferred (&gt;= 0) or {@code -errno}
     */
    void complete(Kiocb kiocb, long res);
}
