package dev.jloop.dist.fakeplugin;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;

/** A plugin's factory whose constructor fails, as one whose dependency is missing would. */
public class ThrowingBackendFactory
        implements BackendFactory
{
    public ThrowingBackendFactory()
    {
        throw new IllegalStateException("the throwing plugin refuses to start");
    }

    @Override
    public String name()
    {
        return "throwing";
    }

    @Override
    public String description()
    {
        return "never seen";
    }

    @Override
    public BackingFile open(BackendConfig config)
    {
        throw new UnsupportedOperationException();
    }
}
