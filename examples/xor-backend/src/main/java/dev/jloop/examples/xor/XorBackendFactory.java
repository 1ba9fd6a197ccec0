package dev.jloop.examples.xor;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.util.List;

/**
 * The {@code xor} backend: {@link XorBackingFile}, a file that holds every byte XORed with the key
 * of {@code --xor-key}. It shows what a plugin needs (a factory, found with ServiceLoader through
 * {@code META-INF/services/dev.jloop.api.BackendFactory}, that declares its options) and scrambles
 * the file just enough to prove that the plugin, not a built-in backend, served it.
 */
public final class XorBackendFactory
        implements BackendFactory
{
    static final String KEY = "xor-key";

    @Override
    public String name()
    {
        return "xor";
    }

    @Override
    public String description()
    {
        return "a plain file holding every byte XORed with --xor-key (an example plugin)";
    }

    /** Chosen by name only: a file of scrambled bytes is never what --backend auto should serve. */
    @Override
    public int autoPriority()
    {
        return -1;
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(PluginOption.of(KEY, PluginOption.Type.STRING, null,
                "the key in hex, one byte or more, repeated over the file", "--backend xor --xor-key 0x5a"));
    }

    /** {@code --size}: the added range holds the key, so that it reads as zeros. */
    @Override
    public void create(BackendConfig config, long size)
            throws IOException
    {
        XorBackingFile.create(config.path(), size, key(config));
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        XorKey key = key(config);
        if (config.direct()) {
            throw new IOException("the xor backend does not do O_DIRECT: drop --direct");
        }
        return XorBackingFile.open(config.path(), config.readOnly(), key);
    }

    private XorKey key(BackendConfig config)
            throws IOException
    {
        // refuses options that are not ours, so that a mistyped one is not silently ignored
        PluginOptions options = PluginOptions.parse("the xor backend", options(), config.options());
        if (!options.isSet(KEY)) {
            throw new IOException("the xor backend needs a key: add --xor-key, e.g. --xor-key 0x5a");
        }
        try {
            return XorKey.parse(options.string(KEY));
        }
        catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
    }
}
