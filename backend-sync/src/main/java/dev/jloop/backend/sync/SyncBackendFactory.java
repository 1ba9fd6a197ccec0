package dev.jloop.backend.sync;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.PluginOptions;

import java.io.IOException;

/** The {@code sync} backend: {@link SyncBackingFile}. */
public class SyncBackendFactory
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
        return "pread/pwrite in the calling thread, one request at a time (the loop driver before AIO)";
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        // takes no options: an option meant for another backend is refused, not ignored
        PluginOptions.parse("the sync backend", options(), config.options());
        return SyncBackingFile.open(config);
    }
}
