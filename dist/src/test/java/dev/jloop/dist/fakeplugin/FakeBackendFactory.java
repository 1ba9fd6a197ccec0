package dev.jloop.dist.fakeplugin;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.PluginOption;

import java.io.IOException;
import java.util.List;

/**
 * A backend that tests put into a plugin folder, as a jar of its compiled class: it stands for a
 * third party's factory. It is not listed in this module's own META-INF/services, so only a plugin
 * folder offers it.
 */
public class FakeBackendFactory
        implements BackendFactory
{
    @Override
    public String name()
    {
        return "fake";
    }

    @Override
    public String description()
    {
        return "a backend from a plugin folder";
    }

    @Override
    public String unavailabilityCause()
    {
        return "it only pretends";
    }

    @Override
    public int autoPriority()
    {
        return -5;
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(PluginOption.of("fake-level", PluginOption.Type.COUNT, "3", "how fake it is", "--backend fake --fake-level 4"));
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        throw new IOException("the fake backend opens nothing");
    }
}
