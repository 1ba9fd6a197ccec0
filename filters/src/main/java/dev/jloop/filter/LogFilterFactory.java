package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * {@code log}: writes one line per request to {@code log-file}, as nbdkit's log filter, to see what
 * a client (or, below another filter, that filter) asks of the file. The option is required; the
 * file is appended to, and created when missing. Example:
 * {@code jloop serve --filter log:log-file=/tmp/disk.log disk.img}.
 *
 * <p>A line is written when its request completes, so lines follow the order of completions:
 * <pre>
 * 2026-12-03 10:15:42.080712 file=disk.img Open size=1073741824 read-only=0 flush=1 fua=1 trim=1 zero=1 extents=1 cache=1
 * 2026-12-03 10:15:42.080907 file=disk.img Write id=1 offset=0 count=65536 fua=0 result=65536 latency=48us
 * 2026-12-03 10:15:42.081012 file=disk.img Read id=2 offset=0 count=65536 fua=0 result=65536 latency=12us
 * 2026-12-03 10:15:42.081100 file=disk.img Flush id=3 datasync=1 result=0 latency=805us
 * 2026-12-03 10:15:42.081131 file=disk.img Trim id=4 offset=0 count=4096 mode=punch_hole,keep_size result=0 latency=9us
 * 2026-12-03 10:15:42.081150 file=disk.img Extents id=5 offset=0 count=65536 extents=2 result=0 latency=3us
 * 2026-12-03 10:15:43.000001 file=disk.img Close requests=5
 * </pre>
 * The time is the completion's, in UTC, as nbdkit writes it. {@code file} is the name of the
 * export's file (shell-quoted when it needs it). {@code id} counts the file's requests from 1.
 * The operation is Read, Write, Flush, Trim (a fallocate that punches a hole: a trim, or a zeroing
 * that may unmap), Zero (any other fallocate), Extents or Cache; {@code fua=1} is a write asked to
 * be durable ({@code IOCB_DSYNC}), {@code datasync=1} an {@code fdatasync} rather than an
 * {@code fsync}, {@code mode} the fallocate mode bits. {@code result} is the bytes transferred (a
 * read or write may transfer fewer than {@code count}, which the device completes with another
 * request), 0, or the errno's name ({@code result=EIO}); {@code latency} is from the call to the
 * completion. Since jloop's filters see no connections, the file's Open and Close are logged where
 * nbdkit logs Connect and Disconnect.
 *
 * <p>Lines are written by one thread per log file, which the requests hand their lines to through a
 * bounded queue; a request never waits for the disk. When the queue is full, lines are dropped and
 * the file says so: {@code Dropped lines=N}.
 */
public final class LogFilterFactory
        implements FilterFactory
{
    static final String FILE = "log-file";

    @Override
    public String name()
    {
        return "log";
    }

    @Override
    public String description()
    {
        return "logs every request with its result and latency to a file, one line each";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(PluginOption.of(FILE, PluginOption.Type.PATH, null, "the file each request is logged to; appended to (required)",
                "--filter log --log-file /tmp/disk.log"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        logFile(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
            throws IOException
    {
        Path path = logFile(options);
        LogWriter writer = LogWriter.open(path);
        try {
            return new LogBackingFile(next, String.valueOf(export.path().getFileName()), writer);
        }
        catch (RuntimeException e) {
            writer.release();
            throw e;
        }
    }

    private Path logFile(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the log filter", options(), given);
        Path path = options.path(FILE);
        if (path == null) {
            throw new IllegalArgumentException("the log filter needs --" + FILE + ", the file it logs to (e.g. --filter log:" + FILE + "=/tmp/disk.log)");
        }
        return path;
    }

    static final class LogBackingFile
            extends ForwardingBackingFile
    {
        private static final Pattern PLAIN = Pattern.compile("[A-Za-z0-9._/+:@%-]+");

        private final String file;
        private final LogWriter writer;
        private final AtomicLong ids = new AtomicLong();
        private boolean closed;

        LogBackingFile(BackingFile next, String fileName, LogWriter writer)
        {
            super(next);
            this.file = quoted(requireNonNull(fileName, "fileName is null"));
            this.writer = requireNonNull(writer, "writer is null");
            long micros = LogWriter.nowMicros();
            long size = next.size();
            Capabilities capabilities = next.capabilities();
            writer.add(out -> {
                LogWriter.appendTime(out, micros);
                out.append(" file=").append(file).append(" Open size=").append(size >= 0 ? String.valueOf(size) : Errno.name(size))
                        .append(" read-only=").append(bit(capabilities.readOnly()))
                        .append(" flush=").append(bit(capabilities.flush()))
                        .append(" fua=").append(bit(capabilities.nativeFua()))
                        .append(" trim=").append(bit(capabilities.trim()))
                        .append(" zero=").append(bit(capabilities.zero()))
                        .append(" extents=").append(bit(capabilities.extents()))
                        .append(" cache=").append(bit(capabilities.cache()));
            });
        }

        @Override
        public long readIter(Kiocb kiocb)
        {
            return logged(kiocb);
        }

        @Override
        public long writeIter(Kiocb kiocb)
        {
            return logged(kiocb);
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            return logged(kiocb);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return logged(kiocb);
        }

        @Override
        public long extents(long offset, long length, ExtentSink sink)
        {
            long id = ids.incrementAndGet();
            long start = System.nanoTime();
            long[] reported = {0};
            long res = super.extents(offset, length, (at, n, type) -> {
                reported[0]++;
                return sink.extent(at, n, type);
            });
            long latency = System.nanoTime() - start;
            long micros = LogWriter.nowMicros();
            long extents = reported[0];
            writer.offer(out -> {
                begin(out, micros, "Extents", id).append(" offset=").append(offset).append(" count=").append(length).append(" extents=").append(extents);
                end(out, res, latency);
            });
            return res;
        }

        @Override
        public long cache(long offset, long length)
        {
            long id = ids.incrementAndGet();
            long start = System.nanoTime();
            long res = super.cache(offset, length);
            long latency = System.nanoTime() - start;
            long micros = LogWriter.nowMicros();
            writer.offer(out -> {
                begin(out, micros, "Cache", id).append(" offset=").append(offset).append(" count=").append(length);
                end(out, res, latency);
            });
            return res;
        }

        @Override
        public void close()
                throws IOException
        {
            if (closed) {
                return;
            }
            closed = true;
            long micros = LogWriter.nowMicros();
            long requests = ids.get();
            writer.add(out -> {
                LogWriter.appendTime(out, micros);
                out.append(" file=").append(file).append(" Close requests=").append(requests);
            });
            try {
                super.close();
            }
            finally {
                writer.release();
            }
        }

        private long logged(Kiocb kiocb)
        {
            long id = ids.incrementAndGet();
            Kiocb.Op op = kiocb.op();
            long offset = kiocb.pos();
            long count = kiocb.iter() != null ? kiocb.iter().count() : kiocb.length();
            int flags = kiocb.flags();
            boolean datasync = kiocb.datasync();
            int mode = kiocb.mode();
            long start = System.nanoTime();
            return passDown(kiocb, (child, res) -> {
                long latency = System.nanoTime() - start;
                long micros = LogWriter.nowMicros();
                writer.offer(out -> request(out, micros, id, op, offset, count, flags, datasync, mode, res, latency));
                kiocb.complete(res);
            });
        }

        private void request(StringBuilder out, long micros, long id, Kiocb.Op op, long offset, long count, int flags, boolean datasync, int mode,
                long res, long latency)
        {
            switch (op) {
                case READ, WRITE -> begin(out, micros, op == Kiocb.Op.READ ? "Read" : "Write", id)
                        .append(" offset=").append(offset).append(" count=").append(count)
                        .append(" fua=").append(bit((flags & Kiocb.IOCB_DSYNC) != 0));
                case FSYNC -> begin(out, micros, "Flush", id).append(" datasync=").append(bit(datasync));
                default -> begin(out, micros, (mode & Fallocate.PUNCH_HOLE) != 0 ? "Trim" : "Zero", id)
                        .append(" offset=").append(offset).append(" count=").append(count)
                        .append(" mode=").append(modeNames(mode));
            }
            end(out, res, latency);
        }

        private StringBuilder begin(StringBuilder out, long micros, String operation, long id)
        {
            LogWriter.appendTime(out, micros);
            return out.append(" file=").append(file).append(' ').append(operation).append(" id=").append(id);
        }

        private static void end(StringBuilder out, long res, long latencyNanos)
        {
            out.append(" result=");
            if (res >= 0) {
                out.append(res);
            }
            else {
                out.append(Errno.name(res));
            }
            out.append(" latency=").append(latencyNanos / 1000).append("us");
        }

        private static String modeNames(int mode)
        {
            StringBuilder names = new StringBuilder();
            int left = mode;
            if ((left & Fallocate.PUNCH_HOLE) != 0) {
                names.append("punch_hole,");
                left &= ~Fallocate.PUNCH_HOLE;
            }
            if ((left & Fallocate.ZERO_RANGE) != 0) {
                names.append("zero_range,");
                left &= ~Fallocate.ZERO_RANGE;
            }
            if ((left & Fallocate.KEEP_SIZE) != 0) {
                names.append("keep_size,");
                left &= ~Fallocate.KEEP_SIZE;
            }
            if (left != 0) {
                names.append("0x").append(Integer.toHexString(left)).append(',');
            }
            return names.length() == 0 ? "0" : names.substring(0, names.length() - 1);
        }

        private static char bit(boolean value)
        {
            return value ? '1' : '0';
        }

        /** As nbdkit's log filter quotes strings: for a shell. */
        static String quoted(String text)
        {
            if (PLAIN.matcher(text).matches()) {
                return text;
            }
            return "'" + text.replace("'", "'\\''") + "'";
        }
    }
}
