package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * The whole conformance suite through the cow filter with a kept overlay ({@code cow-file}) that is
 * committed into the file when the file is closed, as {@code jloop serve --filter cow --cow-file}
 * and then {@code jloop commit} do: the suite's checks of the file on disk then check the commit.
 * The memory file below completes on threads of its own, so reads from below come back on them.
 */
public class TestCowCommitFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "3");
    }

    @Override
    protected BackendFactory factory()
    {
        MemoryBackendFactory memory = new MemoryBackendFactory();
        return new BackendFactory()
        {
            @Override
            public String name()
            {
                return "memory-cow-commit";
            }

            @Override
            public String description()
            {
                return "memory through cow, committed at close";
            }

            @Override
            public BackingFile open(BackendConfig config)
                    throws IOException
            {
                Path base = config.path();
                Path overlay = base.resolveSibling(base.getFileName() + ".cow");
                BackingFile file = new FilteredBackendFactory(memory, new CowFilterFactory(), Map.of("cow-file", overlay.toString())).open(config);
                return new ForwardingBackingFile(file)
                {
                    @Override
                    public void close()
                            throws IOException
                    {
                        super.close();
                        CowOverlay.commit(overlay, base);
                        if (Files.exists(overlay) || Files.exists(CowOverlay.mapPath(overlay))) {
                            throw new AssertionError("commit left the overlay " + overlay);
                        }
                    }
                };
            }
        };
    }
}
