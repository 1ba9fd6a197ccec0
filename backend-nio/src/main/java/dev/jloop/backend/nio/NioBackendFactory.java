package dev.jloop.backend.nio;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.PluginOptions;

import java.io.IOException;

/** The {@code nio} backend: {@link NioBackingFile}. Ranked above {@code sync} for {@code --backend auto}. */
public class NioBackendFactory
        implements BackendFactory
{
    @Override
    public String name()
    {
        return "nio";
    }

    @Override
    public String description()
    {
        return "FileChannel positional I/O on up to queue-depth threads, started on demand";
    }

    @Override
    public int autoPriority()
    {
        return 10;
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        // takes no options: an option meant for another backend is refused, not ignored
        PluginOptions.parse("the nio backend", options(), config.options());
        return NioBackingFile.open(config);
    }
}
