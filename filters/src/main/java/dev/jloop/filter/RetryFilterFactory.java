package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import static java.util.Objects.requireNonNull;

/**
 * {@code retry}: retries failed requests, for a file that fails now and then (a remote one over a
 * flaky network), as nbdkit's retry filter: up to {@code retries} times (default 5), waiting
 * {@code retry-delay} (default 2s) before the first retry and, with {@code retry-exponential}
 * (yes, the default, or no), twice as long before each next one: by default about a minute in all
 * before the last error goes to the client. A request that still fails gets the last attempt's
 * error.
 *
 * <p>What differs from nbdkit: nbdkit's filter reopens the plugin before it retries, which may cure
 * any error, so it retries them all; jloop hands the same request to the same file again (as
 * nbdkit's retry-request filter), and so does not retry errors that would only come back:
 * {@code EPERM}, {@code EROFS}, {@code EINVAL}, {@code EFBIG}, {@code ENOSPC}, {@code ENOSYS} and
 * {@code EOPNOTSUPP} (which the loop device needs at once, to write zeros where a file cannot
 * zero). A flush is not retried either: after a failed {@code fsync(2)} the kernel may have dropped
 * the dirty pages, and a second one can succeed with the data lost
 * (<a href="https://lwn.net/Articles/752063/">LWN, "PostgreSQL's fsync() surprise"</a>), so its
 * error goes to the client. nbdkit's {@code retry-readonly} is not offered, since nothing is
 * reopened.
 *
 * <p>A failed read or write moved nothing (the {@link BackingFile} contract: a negative result
 * transfers nothing, and leaves the iterator alone); a file that moved the iterator all the same
 * has it put back, so that the retry starts where the request did. Retries wait in one timer
 * thread shared by every retry filter, which hands them to the file below again: no thread waits
 * per request, and no completion waits.
 */
public final class RetryFilterFactory
        implements FilterFactory
{
    static final String RETRIES = "retries";
    static final String DELAY = "retry-delay";
    static final String EXPONENTIAL = "retry-exponential";

    /** Errors a second attempt on the same file would only repeat. */
    static final Set<Integer> PERMANENT = Set.of(Errno.EPERM, Errno.EROFS, Errno.EINVAL, Errno.EFBIG, Errno.ENOSPC, Errno.ENOSYS, Errno.EOPNOTSUPP);

    private static final Logger log = LoggerFactory.getLogger(RetryFilterFactory.class);

    // Submits the retries. A backend that answers at once (sync) does its I/O here.
    private static final ScheduledExecutorService TIMER = Timers.daemon("jloop-retry");

    @Override
    public String name()
    {
        return "retry";
    }

    @Override
    public String description()
    {
        return "retries failed requests after a delay that doubles each time (for files that fail now and then)";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(RETRIES, PluginOption.Type.COUNT, "5", "how many times a failed request is retried", "--filter retry:retries=10"),
                PluginOption.of(DELAY, PluginOption.Type.DURATION, "2s", "the wait before the first retry", "--filter retry:retry-delay=500ms"),
                PluginOption.choice(EXPONENTIAL, List.of("yes", "no"), "yes", "whether the wait doubles before each next retry",
                        "--filter retry:retry-exponential=no"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        settings(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        return new RetryBackingFile(next, settings(options));
    }

    private Settings settings(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the retry filter", options(), given);
        long delay = options.millis(DELAY, 0);
        if (delay == 0) {
            throw new IllegalArgumentException("--" + DELAY + ": the wait before a retry cannot be 0");
        }
        return new Settings(options.count(RETRIES, 0), delay, options.string(EXPONENTIAL).equals("yes"));
    }

    record Settings(int retries, long delayMillis, boolean exponential) {}

    static final class RetryBackingFile
            extends ForwardingBackingFile
    {
        private final Settings settings;

        RetryBackingFile(BackingFile next, Settings settings)
        {
            super(next);
            this.settings = requireNonNull(settings, "settings is null");
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return new Attempts(kiocb).next();
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return new Attempts(kiocb).next();
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return new Attempts(kiocb).next();
        }

        /** The attempts at one request: each hands it down again and sees its result. */
        private final class Attempts
                implements KiocbCompletion
        {
            private final Kiocb kiocb;
            private final IovIter iter;
            private int retries;
            private long delayMillis = settings.delayMillis();
            private long countBefore;

            Attempts(Kiocb kiocb)
            {
                this.kiocb = kiocb;
                this.iter = kiocb.iter();
            }

            long next()
            {
                countBefore = iter == null ? 0 : iter.count();
                return passDown(kiocb, this);
            }

            @Override
            public void complete(Kiocb child, long res)
            {
                if (res >= 0 || retries >= settings.retries() || PERMANENT.contains((int) -res)) {
                    kiocb.complete(res);
                    return;
                }
                if (iter != null && iter.count() < countBefore) {
                    iter.revert(countBefore - iter.count());
                }
                retries++;
                long wait = delayMillis;
                if (settings.exponential()) {
                    delayMillis = Math.min(delayMillis * 2, TimeUnit.DAYS.toMillis(1));
                }
                log.debug("{} failed with {}: retry {} of {} in {} ms", kiocb, Errno.name(res), retries, settings.retries(), wait);
                TIMER.schedule(this::next, wait, TimeUnit.MILLISECONDS);
            }
        }
    }
}
