package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/**
 * The conformance suite through the cow filter, with a temporary overlay over the memory backend.
 * The overlay goes with the close, and the file below is never written: the suite checks everything
 * but the closed file, which {@link TestCowCommitFilterConformance} checks with the overlay
 * committed into the file at close.
 */
public class TestCowFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new CowFilterFactory(), Map.of());
    }

    @Override
    protected boolean keepsWritesAfterClose()
    {
        return false;
    }
}
