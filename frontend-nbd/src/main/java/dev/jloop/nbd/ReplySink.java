package dev.jloop.nbd;

/**
 * Where the {@link NbdSubmitter} hands the replies of one connection: the {@link NbdReplyWriter} with
 * its own thread, or the {@link NbdUringLoop} that sends them on its ring. Either way a reply is
 * written whole, and the request is recycled once it is written or dropped.
 */
interface ReplySink
{
    /** The reply of a request that completed on a device thread: queued, never written here; never blocks on I/O. Any thread. */
    void queue(NbdRequest request);

    /**
     * The replies of requests that completed inside the reader's own work, linked from {@code first}
     * to {@code last} through {@link NbdRequest#next}, {@code count} of them. Reader thread only.
     */
    void readerReplies(NbdRequest first, NbdRequest last, int count);
}
