package dev.jloop.filter;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import static java.util.Objects.requireNonNull;

/**
 * The one writer of a log file: lines are handed to it with {@link #offer}, which never waits, and
 * written by its own thread. A completion that logs costs a queue entry, never disk I/O. The queue
 * holds at most {@link #CAPACITY} lines; when it is full, a line is dropped and counted, and the
 * writer says how many in the file ({@code Dropped lines=N}) and once on the log. Every log filter
 * of the process that writes to the same file shares its writer, so that lines of several exports
 * never interleave mid-line.
 */
final class LogWriter
{
    static final int CAPACITY = 64 * 1024;

    private static final Logger log = LoggerFactory.getLogger(LogWriter.class);
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSSSSS").withZone(ZoneOffset.UTC);
    private static final Line STOP = out -> {};
    // guarded by LogWriter.class
    private static final Map<Path, LogWriter> OPEN = new HashMap<>();

    /** One line of the log, formatted by the writer's thread. */
    @FunctionalInterface
    interface Line
    {
        /** Appends the line, without its newline. */
        void format(StringBuilder out);
    }

    private final String name;
    private final Path path;
    private final Writer out;
    private final int capacity;
    // lines queued and not yet taken by the writer; bounds the queue without a lock
    private final AtomicInteger queued = new AtomicInteger();
    private final Queue<Line> queue = new ConcurrentLinkedQueue<>();
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong unreported = new AtomicLong();
    private final Thread thread;
    private boolean warnedOfDrops;
    private boolean failed;
    // guarded by LogWriter.class
    private int users;

    LogWriter(String name, Path path, Writer out, int capacity)
    {
        this.name = requireNonNull(name, "name is null");
        this.path = path;
        this.out = requireNonNull(out, "out is null");
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity must be positive: " + capacity);
        }
        this.capacity = capacity;
        this.thread = new Thread(this::run, "jloop-log-" + name);
        thread.setDaemon(true);
        thread.start();
    }

    /** The writer of {@code path}, opened for appending when no filter of this process writes there yet. */
    static LogWriter open(Path path)
            throws IOException
    {
        Path key = path.toAbsolutePath().normalize();
        synchronized (LogWriter.class) {
            LogWriter writer = OPEN.get(key);
            if (writer == null) {
                Writer out = Files.newBufferedWriter(key, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
                writer = new LogWriter(String.valueOf(key.getFileName()), key, out, CAPACITY);
                OPEN.put(key, writer);
            }
            writer.users++;
            return writer;
        }
    }

    /**
     * Queues a line without waiting; returns {@code false} (and counts the line as dropped) when
     * the queue is full.
     */
    boolean offer(Line line)
    {
        int before = queued.getAndIncrement();
        if (before >= capacity) {
            queued.decrementAndGet();
            dropped.incrementAndGet();
            unreported.incrementAndGet();
            return false;
        }
        enqueue(line, before);
        return true;
    }

    /** Queues a line that must not be dropped (a file's open or close): beyond the bound, still without waiting. */
    void add(Line line)
    {
        enqueue(line, queued.getAndIncrement());
    }

    private void enqueue(Line line, int before)
    {
        queue.add(line);
        // the writer parks only after it has seen nothing queued, so only the first line after that must wake it
        if (before == 0) {
            LockSupport.unpark(thread);
        }
    }

    /** Lines dropped so far, written to the file or not yet. */
    long dropped()
    {
        return dropped.get();
    }

    /**
     * Lets go of the writer; the last user's call writes what is queued, closes the file and ends
     * the thread. Not for a completion: it waits for the disk.
     */
    void release()
            throws IOException
    {
        synchronized (LogWriter.class) {
            if (path != null) {
                if (--users > 0) {
                    return;
                }
                OPEN.remove(path);
            }
        }
        add(STOP);
        boolean interrupted = false;
        while (true) {
            try {
                thread.join();
                break;
            }
            catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        out.close();
    }

    private void run()
    {
        StringBuilder text = new StringBuilder(256);
        while (true) {
            Line line = queue.poll();
            if (line == null) {
                reportDrops(text);
                flush();
                if (queued.get() == 0) {
                    LockSupport.park(this);
                }
                continue;
            }
            queued.decrementAndGet();
            if (line == STOP) {
                reportDrops(text);
                flush();
                return;
            }
            text.setLength(0);
            try {
                line.format(text);
            }
            catch (RuntimeException e) {
                // one line lost, not the log
                log.warn("log {}: cannot format a line: {}", name, e.toString());
                continue;
            }
            write(text.append('\n'));
        }
    }

    private void reportDrops(StringBuilder text)
    {
        long lost = unreported.getAndSet(0);
        if (lost == 0) {
            return;
        }
        if (!warnedOfDrops) {
            warnedOfDrops = true;
            log.warn("log {}: {} lines dropped, the file could not keep up with the requests; it says how many lines it lacks where it lacks them",
                    name, lost);
        }
        text.setLength(0);
        appendTime(text, nowMicros());
        write(text.append(" Dropped lines=").append(lost).append('\n'));
    }

    private void write(CharSequence text)
    {
        if (failed) {
            return;
        }
        try {
            out.append(text);
        }
        catch (IOException e) {
            fail(e);
        }
    }

    private void flush()
    {
        if (failed) {
            return;
        }
        try {
            out.flush();
        }
        catch (IOException e) {
            fail(e);
        }
    }

    private void fail(IOException e)
    {
        failed = true;
        log.warn("log {}: cannot write, logging no more: {}", name, e.toString());
    }

    /** Microseconds since the epoch, now. */
    static long nowMicros()
    {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000 + now.getNano() / 1000;
    }

    /** {@code 2026-12-03 10:15:42.123456}, in UTC: nbdkit's log filter's timestamp. */
    static void appendTime(StringBuilder out, long epochMicros)
    {
        TIME.formatTo(Instant.ofEpochSecond(Math.floorDiv(epochMicros, 1_000_000), Math.floorMod(epochMicros, 1_000_000) * 1000L), out);
    }
}
