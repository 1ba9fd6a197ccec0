package dev.jloop.dist.fakeplugin;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;

/** A plugin's factory that takes the name of a built-in backend. */
public class SyncNamedBackendFactory
        implements BackendFactory
{
    @Override
    public String name()
    {
        return "sync";
    }

    @Override
    public String description()
    {
        return "an impostor";
    }

    @Override
    public BackingFile open(BackendConfig config)
    {
        throw new UnsupportedOperationException();
    }
}
