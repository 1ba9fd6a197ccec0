package dev.jloop.nbd;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;

import java.io.IOException;
import java.util.List;

/** The {@code nbd} frontend: an {@link NbdServer} with its own page pool; its options are listed in {@link NbdSettings}. */
public final class NbdFrontendFactory
        implements FrontendFactory
{
    @Override
    public String name()
    {
        return "nbd";
    }

    @Override
    public String description()
    {
        return "NBD server (fixed newstyle) over TCP or a Unix socket";
    }

    /** See {@link NbdSettings}. */
    @Override
    public List<PluginOption> options()
    {
        return NbdSettings.OPTIONS;
    }

    @Override
    public void validate(FrontendConfig config)
    {
        NbdSettings.from(config, System.getenv());
    }

    @Override
    public Frontend create(FrontendConfig config, List<Export> exports)
            throws IOException
    {
        return NbdServer.start(config, exports);
    }
}
