package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/**
 * The conformance suite through the retry filter over an error filter that fails a fifth of the
 * reads, writes, trims and zeroes with EIO: every one of them must come through, retried from the
 * timer thread, and the errors the suite expects (EPERM, EOPNOTSUPP) must come at once. Flushes
 * are not failed, since the retry filter passes their errors on.
 */
public class TestRetryFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        BackendFactory failing = new FilteredBackendFactory(new MemoryBackendFactory(), new ErrorFilterFactory(),
                Map.of("error-rate", "20%", "error-ops", "read,write,trim,zero"));
        return new FilteredBackendFactory(failing, new RetryFilterFactory(), Map.of("retries", "30", "retry-delay", "1ms", "retry-exponential", "no"));
    }
}
