package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.KiocbCompletion;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import dev.jloop.api.Sizes;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * {@code rate}: limits the bandwidth of an export, as nbdkit's rate filter. {@code rate} is bits per
 * second for the export's reads, and as many again for its writes: as nbdkit, each direction has a
 * bucket of its own, and trims, zeroes and flushes cost nothing (they carry no data on the wire). A
 * rate is a whole number with an optional {@code K}, {@code M}, {@code G} or {@code T} suffix, in
 * powers of 1024 as nbdkit reads it ({@code nbdkit_parse_size}; its manual says "megabits", its
 * parser multiplies by 1024): {@code rate=16M} is 16,777,216 bits, 2 MiB, a second.
 *
 * <p>{@code rate-file} names a file whose first line is a rate, read again every second, so that the
 * limit changes while serving (write a new file and rename it over the old one). Until the file
 * exists {@code rate} holds (no limit without it); a file that is removed leaves the last rate it
 * gave; 0 there means no limit; a line that is not a rate is ignored, with a warning.
 *
 * <p>{@code burstiness} is how long a client that paused may go faster than the rate: the buckets
 * hold that much time's worth and start full. nbdkit's default is 2 s; jloop's is 1 s, so that a
 * short transfer stays closer to the limit (8 MiB at {@code rate=16M} take 3 s rather than 2 s).
 * Sustained throughput is the rate either way.
 *
 * <p>The limit is the export's: all connections to it share it, and with {@code --filter} given for
 * the whole server each export has a limit of its own (nbdkit's {@code rate} is the server's).
 * nbdkit's {@code connection-rate} and {@code connection-rate-file} are not offered: requests reach
 * a filter through the export's one block device, which every NBD connection to it shares, and
 * nothing in a request says which connection sent it.
 *
 * <p>A request takes its bits when it arrives; one that must wait is handed to the file below later
 * by one timer thread shared by every rate filter, so no thread waits per request and completions
 * are untouched. A short or failed transfer gives back the bits it did not move. A request already
 * waiting keeps its time when the rate changes.
 */
public final class RateFilterFactory
        implements FilterFactory
{
    static final String RATE = "rate";
    static final String RATE_FILE = "rate-file";
    static final String BURSTINESS = "burstiness";

    private static final Logger log = LoggerFactory.getLogger(RateFilterFactory.class);
    private static final Pattern RATE_TEXT = Pattern.compile("\\d+\\s*[kmgt]?", Pattern.CASE_INSENSITIVE);
    private static final long RATE_FILE_PERIOD_MILLIS = 1000;

    // Submits the requests that waited. A backend that answers at once (sync) does its I/O here, as
    // it would on the loop device's thread; the rate bounds how much of it there is.
    private static final ScheduledExecutorService TIMER = Timers.daemon("jloop-rate");

    @Override
    public String name()
    {
        return "rate";
    }

    @Override
    public String description()
    {
        return "limits the export's bandwidth in bits per second, reads and writes each, changeable through a file";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(RATE, PluginOption.Type.STRING, null, "bits per second for reads, and for writes (K, M, G: powers of 1024, as nbdkit)",
                        "--filter rate:rate=100M"),
                PluginOption.of(RATE_FILE, PluginOption.Type.PATH, null, "a file holding the rate, read again every second while serving",
                        "--filter rate:rate-file=/run/jloop-rate"),
                PluginOption.of(BURSTINESS, PluginOption.Type.DURATION, "1s", "how long a client that paused may exceed the rate",
                        "--filter rate:rate=100M,burstiness=2s"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        settings(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        RateBackingFile file = new RateBackingFile(next, settings(options), System.nanoTime());
        file.watchRateFile();
        return file;
    }

    private Settings settings(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the rate filter", options(), given);
        long rate = 0;
        if (options.isSet(RATE)) {
            try {
                rate = parseRate(options.string(RATE));
            }
            catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--" + RATE + ": " + e.getMessage(), e);
            }
            if (rate == 0) {
                throw new IllegalArgumentException("--" + RATE + ": 0 is no rate; leave it out for no limit");
            }
        }
        return new Settings(rate, options.path(RATE_FILE), TimeUnit.MILLISECONDS.toNanos(options.millis(BURSTINESS, 0)));
    }

    record Settings(long bitsPerSecond, Path rateFile, long burstNanos) {}

    /** Bits per second: a whole number with an optional K, M, G or T suffix, powers of 1024, as {@code nbdkit_parse_size}. */
    static long parseRate(String text)
    {
        String trimmed = text.trim();
        if (!RATE_TEXT.matcher(trimmed).matches()) {
            throw new IllegalArgumentException("'" + text + "' is not a rate: bits per second, a whole number with an optional K, M, G or T suffix "
                    + "(powers of 1024), e.g. 100M");
        }
        try {
            return Sizes.parse(trimmed);
        }
        catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("'" + text + "' is too large a rate", e);
        }
    }

    static final class RateBackingFile
            extends ForwardingBackingFile
    {
        private final TokenBucket reads;
        private final TokenBucket writes;
        private final Path rateFile;
        /** What was wrong with the rate file when last read, so that it is reported once; the timer's after construction. */
        private String lastProblem;
        private volatile ScheduledFuture<?> watching;

        RateBackingFile(BackingFile next, Settings settings, long now)
        {
            super(next);
            requireNonNull(settings, "settings is null");
            this.reads = new TokenBucket(settings.bitsPerSecond(), settings.burstNanos(), now);
            this.writes = new TokenBucket(settings.bitsPerSecond(), settings.burstNanos(), now);
            this.rateFile = settings.rateFile();
        }

        /** Reads the rate file now, then every second on the timer, until closed. */
        void watchRateFile()
        {
            if (rateFile != null) {
                readRateFile();
                watching = TIMER.scheduleWithFixedDelay(this::readRateFile, RATE_FILE_PERIOD_MILLIS, RATE_FILE_PERIOD_MILLIS, TimeUnit.MILLISECONDS);
            }
        }

        /** The rate in force, bits per second; 0 for none. */
        long bitsPerSecond()
        {
            return writes.bitsPerSecond();
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return limited(kiocb, reads);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return limited(kiocb, writes);
        }

        @Override
        public void close()
                throws IOException
        {
            ScheduledFuture<?> watch = watching;
            if (watch != null) {
                watch.cancel(false);
            }
            super.close();
        }

        private long limited(Kiocb kiocb, TokenBucket bucket)
        {
            long bits = kiocb.iter().count() * Byte.SIZE;
            long wait = bucket.take(bits, System.nanoTime());
            if (wait == TokenBucket.UNLIMITED) {
                return kiocb.op() == Kiocb.Op.READ ? super.readIter(kiocb) : super.writeIter(kiocb);
            }
            KiocbCompletion refunding = (child, res) -> {
                bucket.refund(bits - Math.max(0, res) * Byte.SIZE);
                kiocb.complete(res);
            };
            if (wait == 0) {
                return passDown(kiocb, refunding);
            }
            TIMER.schedule(() -> passDown(kiocb, refunding), wait, TimeUnit.NANOSECONDS);
            return Kiocb.QUEUED;
        }

        private void readRateFile()
        {
            String line;
            try (BufferedReader reader = Files.newBufferedReader(rateFile, StandardCharsets.UTF_8)) {
                line = Objects.requireNonNullElse(reader.readLine(), "");
            }
            catch (NoSuchFileException e) {
                // not there (yet, or any more): the rate stays as it is
                return;
            }
            catch (IOException | RuntimeException e) {
                report("cannot read " + rateFile + ": " + e);
                return;
            }
            long rate;
            try {
                rate = parseRate(line);
            }
            catch (IllegalArgumentException e) {
                report(rateFile + ": " + e.getMessage() + "; the rate stays " + describe(writes.bitsPerSecond()));
                return;
            }
            lastProblem = null;
            long now = System.nanoTime();
            reads.adjust(rate, now);
            long old = writes.adjust(rate, now);
            if (old != rate) {
                log.info("rate from {}: {}, was {}", rateFile, describe(rate), describe(old));
            }
        }

        private void report(String problem)
        {
            if (!problem.equals(lastProblem)) {
                log.warn("{}", problem);
            }
            lastProblem = problem;
        }

        private static String describe(long bitsPerSecond)
        {
            return bitsPerSecond == 0 ? "no limit" : bitsPerSecond + " bits/s (" + Sizes.format(bitsPerSecond / Byte.SIZE) + "/s)";
        }
    }
}
