package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.backend.nio.NioBackendFactory;

/** The conformance suite through every content-keeping filter over the nio backend. */
public class TestAllFiltersOverNio
        extends AbstractAllFiltersTest
{
    @Override
    protected BackendFactory backend()
    {
        return new NioBackendFactory();
    }
}
