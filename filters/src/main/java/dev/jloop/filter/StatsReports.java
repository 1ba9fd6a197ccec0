package dev.jloop.filter;

import dev.jloop.filter.StatsFilterFactory.StatsBackingFile;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where the stats filters of this process write, and when: a file's section when it closes, and
 * every open file's on {@code SIGUSR1}, for which the first stats filter registers a handler, once
 * per process (as {@code dist}'s Main does for SIGTERM and SIGINT). Files that write to the same
 * place share it: a replaced stats file holds all of them; an appended one, or standard error, gets
 * the sections as they come. Reports are written under this class's lock, by the thread that
 * closes a file or by the JVM's signal thread, never by a request.
 */
final class StatsReports
{
    private static final Logger log = LoggerFactory.getLogger(StatsReports.class);

    // guarded by StatsReports.class
    private static final Map<Key, Target> TARGETS = new LinkedHashMap<>();
    private static final Map<StatsBackingFile, Target> BY_FILE = new IdentityHashMap<>();
    private static Boolean signalHandled;

    private StatsReports() {}

    /** Where reports go: a file (replaced or appended to) or, without a path, standard error. */
    private record Key(Path path, boolean append) {}

    private static final class Target
    {
        final Key key;
        final List<StatsBackingFile> files = new ArrayList<>();

        Target(Key key)
        {
            this.key = key;
        }

        /** Writes the sections of {@code files}, or of all of this target's files where the file is replaced. */
        void write(List<StatsBackingFile> sections)
        {
            boolean replace = key.path() != null && !key.append();
            StringBuilder text = new StringBuilder();
            for (StatsBackingFile file : replace ? files : sections) {
                file.report(text);
            }
            if (text.length() == 0) {
                return;
            }
            if (key.path() == null) {
                System.err.print(text);
                System.err.flush();
                return;
            }
            try {
                if (replace && (Files.isRegularFile(key.path()) || !Files.exists(key.path()))) {
                    replace(key.path(), text.toString());
                }
                else {
                    Files.writeString(key.path(), text, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
                }
            }
            catch (IOException e) {
                log.warn("cannot write the statistics to {}: {}", key.path(), e.toString());
            }
        }

        // a reader never sees half a report: the new file takes the old one's name whole
        private static void replace(Path path, String text)
                throws IOException
        {
            Path temporary = path.resolveSibling("." + path.getFileName() + ".jloop-tmp");
            Files.writeString(temporary, text, StandardCharsets.UTF_8);
            try {
                Files.move(temporary, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            catch (AtomicMoveNotSupportedException e) {
                Files.move(temporary, path, StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    /** Counts {@code file} among those reported to {@code path} (standard error when {@code null}). */
    static synchronized void opened(StatsBackingFile file, Path path, boolean append)
    {
        handleSignal();
        Target target = TARGETS.computeIfAbsent(new Key(path, path != null && append), Target::new);
        target.files.add(file);
        BY_FILE.put(file, target);
    }

    /** Writes the report of a file that has just closed. */
    static synchronized void closed(StatsBackingFile file)
    {
        Target target = BY_FILE.remove(file);
        if (target == null) {
            return;
        }
        target.write(List.of(file));
        if (target.files.stream().allMatch(StatsBackingFile::isClosed)) {
            TARGETS.remove(target.key);
        }
    }

    /** What SIGUSR1 does: the report of every open file, to where each goes. */
    static synchronized void reportAll()
    {
        for (Target target : TARGETS.values()) {
            target.write(target.files.stream().filter(file -> !file.isClosed()).toList());
        }
    }

    /** Whether SIGUSR1 writes the reports; known after the first stats filter opened. */
    static synchronized boolean signalHandled()
    {
        return Boolean.TRUE.equals(signalHandled);
    }

    private static void handleSignal()
    {
        if (signalHandled != null) {
            return;
        }
        try {
            Signal.handle(new Signal("USR1"), signal -> reportAll());
            signalHandled = true;
        }
        catch (IllegalArgumentException e) {
            signalHandled = false;
            log.warn("SIGUSR1 cannot be handled ({}): the stats filter writes its statistics at close only", e.getMessage());
        }
    }
}
