package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/** The conformance suite through the error filter while its trigger file is absent: it must pass everything through. */
public class TestErrorFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new ErrorFilterFactory(), Map.of("error-file", "/nonexistent/jloop-error-trigger"));
    }
}
