package dev.jloop.filter;

import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;

/** The timer threads of the filters: one per kind of work, shared by every filter of that kind. */
final class Timers
{
    private Timers() {}

    /**
     * One daemon thread named {@code name}: a delayed request then costs a queue entry, not a
     * thread, and the thread never keeps the process alive.
     */
    static ScheduledExecutorService daemon(String name)
    {
        return Executors.newSingleThreadScheduledExecutor(runnable -> {
            Thread thread = new Thread(runnable, name);
            thread.setDaemon(true);
            return thread;
        });
    }
}
