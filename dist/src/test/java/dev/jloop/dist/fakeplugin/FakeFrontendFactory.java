package dev.jloop.dist.fakeplugin;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;

import java.io.IOException;
import java.util.List;

/** A frontend that tests put into a plugin folder beside {@link FakeBackendFactory}. */
public class FakeFrontendFactory
        implements FrontendFactory
{
    @Override
    public String name()
    {
        return "fake-protocol";
    }

    @Override
    public String description()
    {
        return "a frontend from a plugin folder";
    }

    @Override
    public Frontend create(FrontendConfig config, List<Export> exports)
            throws IOException
    {
        throw new IOException("the fake frontend serves nothing");
    }
}
