package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;
import dev.jloop.testkit.MemoryBackendFactory;

import java.util.Map;

/**
 * The conformance suite through the blocksize filter with 4 KiB blocks and 64 KiB pieces, over a
 * memory file that completes on threads of its own: most of the suite's requests are unaligned or
 * larger, so they are split and read-modify-written, many at once on the same blocks.
 */
public class TestBlocksizeFilterConformance
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new FilteredBackendFactory(new MemoryBackendFactory(), new BlocksizeFilterFactory(),
                Map.of("minblock", "4K", "maxdata", "64K", "maxlen", "64K"));
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of("memory-queued", "3");
    }
}
