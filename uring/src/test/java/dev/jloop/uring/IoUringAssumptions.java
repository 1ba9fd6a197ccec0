package dev.jloop.uring;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Skips a test where io_uring is unavailable, except under {@code CI=true}, where it must have run. */
final class IoUringAssumptions
{
    private IoUringAssumptions() {}

    static void assumeIoUring()
    {
        if ("true".equalsIgnoreCase(System.getenv("CI"))) {
            assertTrue(IoUring.isAvailable(), () -> "CI=true and io_uring unavailable: " + IoUring.unavailabilityCause());
        }
        else {
            assumeTrue(IoUring.isAvailable(), () -> "io_uring unavailable: " + IoUring.unavailabilityCause());
        }
    }

    static void assumeMultishotReceive()
    {
        if ("true".equalsIgnoreCase(System.getenv("CI"))) {
            assertTrue(IoUring.multishotReceiveUnavailabilityCause() == null,
                    () -> "CI=true and multishot receive unavailable: " + IoUring.multishotReceiveUnavailabilityCause());
        }
        else {
            assumeTrue(IoUring.multishotReceiveUnavailabilityCause() == null,
                    () -> "multishot receive unavailable: " + IoUring.multishotReceiveUnavailabilityCause());
        }
    }
}
