package dev.jloop.api;

/** How much concurrency a backing file accepts, as nbdkit's thread models. */
public enum ThreadModel
{
    /**
     * One operation at a time, across every connection and client (nbdkit's
     * {@code NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS}); each runs to completion in the calling
     * thread. The device serialises requests onto one worker thread: the loop driver before
     * asynchronous I/O.
     */
    SERIALIZE_ALL_REQUESTS,
    /** Any number of operations from any threads at once. */
    PARALLEL,
}
