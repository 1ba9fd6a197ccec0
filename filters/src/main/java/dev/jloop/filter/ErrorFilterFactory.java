package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * {@code error}: fails requests on purpose, for testing clients, as nbdkit's error filter: with
 * {@code error} (an errno, default EIO), at {@code error-rate} (0 to 1, or a percentage; default 1:
 * every request), for the operations in {@code error-ops}, and with {@code error-file} only while
 * that file exists, so a test switches errors on and off with {@code touch} and {@code rm}. A failed
 * request never reaches the file below.
 */
public final class ErrorFilterFactory
        implements FilterFactory
{
    static final String ERROR = "error";
    static final String RATE = "error-rate";
    static final String OPS = "error-ops";
    static final String FILE = "error-file";

    @Override
    public String name()
    {
        return "error";
    }

    @Override
    public String description()
    {
        return "fails requests with a chosen errno, at a rate, while a file exists (for testing clients)";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(ERROR, PluginOption.Type.STRING, "EIO", "the errno failed requests get (EIO, ENOSPC, EPERM, ...)", "--filter error --error ENOSPC"),
                PluginOption.of(RATE, PluginOption.Type.STRING, "1", "the share of requests that fail: 0 to 1, or a percentage", "--filter error --error-rate 10%"),
                PluginOption.of(OPS, PluginOption.Type.STRING, "all", "the operations that may fail: all, or some of read, write, flush, trim, zero",
                        "--filter error --error-ops write,flush"),
                PluginOption.of(FILE, PluginOption.Type.PATH, null, "fail only while this file exists", "--filter error --error-file /tmp/fail"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        settings(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
    {
        return new ErrorBackingFile(next, settings(options));
    }

    private Settings settings(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the error filter", options(), given);
        int errno;
        try {
            errno = Errno.byName(options.string(ERROR));
        }
        catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--" + ERROR + ": " + e.getMessage(), e);
        }
        return new Settings(errno, parseRate(options.string(RATE)), Operation.parseList(OPS, options.string(OPS)), options.path(FILE));
    }

    record Settings(int errno, double rate, Set<Operation> operations, Path trigger) {}

    static double parseRate(String text)
    {
        String trimmed = text.trim();
        double rate;
        try {
            rate = trimmed.endsWith("%") ? Double.parseDouble(trimmed.substring(0, trimmed.length() - 1)) / 100 : Double.parseDouble(trimmed);
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + RATE + ": '" + text + "' is not a rate: 0 to 1, or a percentage like 10%");
        }
        if (!(rate >= 0 && rate <= 1)) {
            throw new IllegalArgumentException("--" + RATE + ": '" + text + "' is not between 0 and 1 (0% and 100%)");
        }
        return rate;
    }

    static final class ErrorBackingFile
            extends ForwardingBackingFile
    {
        private final Settings settings;

        ErrorBackingFile(BackingFile next, Settings settings)
        {
            super(next);
            this.settings = settings;
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return fails(kiocb) ? -settings.errno() : super.readIter(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return fails(kiocb) ? -settings.errno() : super.writeIter(kiocb);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            return fails(kiocb) ? -settings.errno() : super.fsync(kiocb);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return fails(kiocb) ? -settings.errno() : super.fallocate(kiocb);
        }

        private boolean fails(Kiocb kiocb)
        {
            if (!settings.operations().contains(Operation.of(kiocb))) {
                return false;
            }
            if (settings.trigger() != null && !Files.exists(settings.trigger())) {
                return false;
            }
            return settings.rate() >= 1 || ThreadLocalRandom.current().nextDouble() < settings.rate();
        }
    }
}
