package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * {@code delay}: holds each request's completion back, as nbdkit's delay filter (for testing
 * timeouts and latency): {@code delay-read}, {@code delay-write}, {@code delay-flush},
 * {@code delay-trim} and {@code delay-zero} for one operation each, {@code delay} for all those not
 * given, and {@code delay-jitter} to add a random share (0 to 1) of it. The request runs on the file
 * below at once; its completion is delivered later by one timer thread shared by every delay
 * filter, so no thread sleeps per request and the file below keeps its queue depth.
 */
public final class DelayFilterFactory
        implements FilterFactory
{
    static final String DELAY = "delay";
    static final String JITTER = "delay-jitter";

    // one timer for the process: a delayed completion costs a queue entry, not a thread
    private static final ScheduledExecutorService TIMER = Timers.daemon("jloop-delay");

    @Override
    public String name()
    {
        return "delay";
    }

    @Override
    public String description()
    {
        return "delays the completion of requests, per operation (for testing timeouts and latency)";
    }

    @Override
    public List<PluginOption> options()
    {
        List<PluginOption> options = new ArrayList<>();
        options.add(PluginOption.of(DELAY, PluginOption.Type.DURATION, "0", "delay of every operation not given its own", "--filter delay --delay 100ms"));
        for (Operation operation : Operation.values()) {
            options.add(PluginOption.of(DELAY + "-" + operation.key(), PluginOption.Type.DURATION, null,
                    "delay of each " + operation.key(), "--filter delay --delay-" + operation.key() + " 10ms"));
        }
        options.add(PluginOption.of(JITTER, PluginOption.Type.STRING, "0", "a random share of the delay added to it, 0 to 1", "--filter delay --delay 10ms --delay-jitter 0.5"));
        return List.copyOf(options);
    }

    @Override
    public void validate(Map<String, String> options)
    {
        delays(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        return new DelayBackingFile(next, delays(options));
    }

    private Delays delays(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the delay filter", options(), given);
        long all = options.millis(DELAY, 0);
        Map<Operation, Long> millis = new EnumMap<>(Operation.class);
        for (Operation operation : Operation.values()) {
            millis.put(operation, options.millis(DELAY + "-" + operation.key(), all));
        }
        double jitter;
        try {
            jitter = Double.parseDouble(options.string(JITTER));
        }
        catch (NumberFormatException e) {
            jitter = -1;
        }
        if (!(jitter >= 0 && jitter <= 1)) {
            throw new IllegalArgumentException("--" + JITTER + ": '" + options.string(JITTER) + "' is not a share from 0 to 1");
        }
        return new Delays(millis, jitter);
    }

    record Delays(Map<Operation, Long> millis, double jitter)
    {
        long nanos(Operation operation)
        {
            long base = TimeUnit.MILLISECONDS.toNanos(millis.get(operation));
            return jitter == 0 ? base : base + (long) (base * jitter * ThreadLocalRandom.current().nextDouble());
        }
    }

    static final class DelayBackingFile
            extends ForwardingBackingFile
    {
        private final Delays delays;

        DelayBackingFile(BackingFile next, Delays delays)
        {
            super(next);
            this.delays = delays;
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return delayed(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return delayed(kiocb);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            return delayed(kiocb);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return delayed(kiocb);
        }

        private long delayed(Kiocb kiocb)
        {
            long deadline = System.nanoTime() + delays.nanos(Operation.of(kiocb));
            return passDown(kiocb, (child, res) -> {
                long wait = deadline - System.nanoTime();
                if (wait <= 0) {
                    kiocb.complete(res);
                }
                else {
                    TIMER.schedule(() -> kiocb.complete(res), wait, TimeUnit.NANOSECONDS);
                }
            });
        }
    }
}
