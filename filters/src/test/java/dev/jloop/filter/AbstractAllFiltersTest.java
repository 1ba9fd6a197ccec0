package dev.jloop.filter;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FilterFactory;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.FilteredBackendFactory;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The conformance suite over a real backend through every bundled filter that keeps the file's
 * content as it is, stacked as a user would stack them (cow, which never writes the file below,
 * has its own runs). Each filter is set up to pass everything through, yet does its work: every
 * request is logged, counted, checked for errors, retried on failure, rate-checked, split to
 * blocksize's limits, read ahead and its extents cached. (Over io_uring this stack found a crash:
 * a close that unmapped the ring while the submitter whose inline reap delivered the last completion
 * was still inside it.)
 */
public abstract class AbstractAllFiltersTest
        extends AbstractBackingFileTest
{
    /** The backend under the stack. */
    protected abstract BackendFactory backend();

    @Override
    protected final BackendFactory factory()
    {
        Path target = Path.of("target");
        // the first is closest to the frontend, as with --filter
        List<Map.Entry<FilterFactory, Map<String, String>>> stack = List.of(
                Map.entry(new LogFilterFactory(), Map.of("log-file", target.resolve("all-filters.log").toString())),
                Map.entry(new StatsFilterFactory(), Map.of("stats-file", target.resolve("all-filters.stats").toString(), "stats-append", "true")),
                Map.entry(new ErrorFilterFactory(), Map.of("error-file", target.resolve("no-such-trigger").toString())),
                Map.entry(new RetryFilterFactory(), Map.of("retry-delay", "10ms")),
                Map.entry(new DelayFilterFactory(), Map.of("delay-write", "1ms")),
                Map.entry(new RateFilterFactory(), Map.of("rate", "100G")),
                Map.entry(new BlocksizeFilterFactory(), Map.of("maxdata", "64K")),
                Map.entry(new ReadaheadFilterFactory(), Map.of()),
                Map.entry(new CacheExtentsFilterFactory(), Map.of()));
        BackendFactory factory = backend();
        for (int i = stack.size() - 1; i >= 0; i--) {
            factory = new FilteredBackendFactory(factory, stack.get(i).getKey(), stack.get(i).getValue());
        }
        return factory;
    }
}
