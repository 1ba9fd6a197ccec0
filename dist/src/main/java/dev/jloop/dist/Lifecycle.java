package dev.jloop.dist;

import dev.jloop.api.StillServingException;

import java.io.Closeable;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * The one place that stops what jloop started: components are registered as they start (files,
 * then devices, then the frontend, so each after what it depends on) and closed in the reverse order,
 * later failures kept as suppressed (as Airlift's {@code LifeCycleManager} and
 * {@code AutoCloseableCloser}). A component that cannot stop because it still serves
 * ({@link StillServingException}) stops the closing there: what it depends on stays open.
 */
final class Lifecycle
{
    private final Deque<Closeable> started = new ArrayDeque<>();

    /** Registers {@code component}, started after everything registered before; returns it. */
    synchronized <T extends Closeable> T started(T component)
    {
        started.push(requireNonNull(component, "component is null"));
        return component;
    }

    /**
     * Replaces {@code owned} by {@code owner}, which closes it (a loop device owns its backing file):
     * {@code owned} must be the last component registered.
     */
    synchronized <T extends Closeable> T handOver(Closeable owned, T owner)
    {
        if (started.peek() != owned) {
            throw new IllegalStateException(owned + " is not the last component started");
        }
        started.pop();
        return started(owner);
    }

    /** What is still open, the last started first. */
    synchronized List<Closeable> open()
    {
        return List.copyOf(started);
    }

    /**
     * Closes everything, the last started first.
     *
     * @throws StillServingException from a component that could not stop; it and what was started before it stay open
     * @throws IOException the first failure, with the later ones suppressed
     */
    synchronized void close()
            throws IOException
    {
        IOException failure = null;
        while (!started.isEmpty()) {
            Closeable next = started.peek();
            try {
                next.close();
            }
            catch (StillServingException e) {
                started.pop();
                if (failure != null) {
                    e.addSuppressed(failure);
                }
                throw e;
            }
            catch (IOException | RuntimeException e) {
                if (failure == null) {
                    failure = e instanceof IOException ? (IOException) e : new IOException(e);
                }
                else {
                    failure.addSuppressed(e);
                }
            }
            started.pop();
        }
        if (failure != null) {
            throw failure;
        }
    }
}
