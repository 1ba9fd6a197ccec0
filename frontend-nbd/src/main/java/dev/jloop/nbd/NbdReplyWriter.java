package dev.jloop.nbd;

import dev.jloop.nbd.channel.NbdChannel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static java.util.Objects.requireNonNull;

/**
 * Sends the replies of one connection, simple or structured, in the order they are queued
 * (completion order). Completions run on device threads that must never wait for a slow client, so
 * {@link #queue} only links the request into a list; this thread does the blocking socket write and
 * recycles the requests afterwards. It takes every reply queued so far at once and gathers their
 * headers and page buffers into as few gathering writes as it can (up to {@value #MAX_GATHER}
 * buffers, {@value #MAX_WRITE} bytes each), so a burst of completions costs one system call, not one
 * per reply. The reader thread sends the replies that completed inside it through the same routine
 * ({@link #sendOrQueue}).
 *
 * <p>After a failed write (the client went away) replies are dropped but requests are still
 * recycled, so pages and budget come back and the reader can finish.
 */
final class NbdReplyWriter
        implements Runnable, ReplyOutput, ReplySink, ReplyProgress
{
    private static final Logger log = LoggerFactory.getLogger(NbdReplyWriter.class);

    /**
     * Replies the reader sends itself at most: a larger burst goes to this thread in one hand-off,
     * so that it is written while the reader parses the next requests.
     */
    private static final int DIRECT_REPLIES = 4;

    /** Buffers per gathering write: Linux's IOV_MAX. */
    static final int MAX_GATHER = 1024;
    /** Most bytes given to one socket write: a client reading at least this much per reply-timeout is not dropped. */
    static final int MAX_WRITE = 1 << 20;

    private final NbdChannel channel;
    private final NbdRequestPool pool;
    private final String peer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition queued = lock.newCondition();
    private NbdRequest head;
    private NbdRequest tail;
    private boolean stopping;
    /** Held while replies are written: by this thread, or by the reader sending what completed in it. */
    private final ReentrantLock sendLock = new ReentrantLock();
    // Under sendLock: the buffers gathered for the next socket write.
    private final ByteBuffer[] gather = new ByteBuffer[MAX_GATHER];
    private int count;
    private volatile boolean broken;
    // For the server's reply watchdog: socket writes that moved bytes, and whether a thread is
    // writing replies (a client that stopped reading leaves it writing and progress still).
    private volatile long progress;
    private volatile boolean writing;

    private final NbdConnectionCounters counters;

    NbdReplyWriter(NbdChannel channel, NbdRequestPool pool, String peer, NbdConnectionCounters counters)
    {
        this.counters = requireNonNull(counters, "counters is null");
        this.channel = requireNonNull(channel, "channel is null");
        this.pool = requireNonNull(pool, "pool is null");
        this.peer = requireNonNull(peer, "peer is null");
    }

    /** Queues the reply of a completed request; never blocks on I/O. Any thread. */
    @Override
    public void queue(NbdRequest request)
    {
        request.next = null;
        queueAll(request, request);
    }

    /** A few are written by the reader itself ({@link #sendOrQueue}), a burst is queued for this thread. */
    @Override
    public void readerReplies(NbdRequest first, NbdRequest last, int count)
    {
        if (count > DIRECT_REPLIES) {
            queueAll(first, last);
        }
        else {
            sendOrQueue(first, last);
        }
    }

    /**
     * The reader thread's replies (requests that completed while it submitted them, linked through
     * {@link NbdRequest#next}): it writes them itself when no write is under way, which saves waking
     * this thread; else they join the queue. Like nbdkit's threads, the reader then waits for a client
     * that does not read its replies, and reads no further requests meanwhile; the reply watchdog
     * sees that write as it sees this thread's.
     */
    void sendOrQueue(NbdRequest first, NbdRequest last)
    {
        if (sendLock.tryLock()) {
            try {
                sendAll(first);
            }
            finally {
                sendLock.unlock();
            }
            return;
        }
        queueAll(first, last);
    }

    /** Queues the replies linked from {@code first} to {@code last}; never blocks on I/O. Any thread. */
    void queueAll(NbdRequest first, NbdRequest last)
    {
        lock.lock();
        try {
            if (tail == null) {
                head = first;
            }
            else {
                tail.next = first;
            }
            tail = last;
            queued.signal();
        }
        finally {
            lock.unlock();
        }
    }

    /** Lets the thread end once the queue is empty; the caller has made sure nothing more is queued. */
    void stop()
    {
        lock.lock();
        try {
            stopping = true;
            queued.signal();
        }
        finally {
            lock.unlock();
        }
    }

    @Override
    public long progress()
    {
        return progress;
    }

    @Override
    public boolean busy()
    {
        if (broken) {
            return false;
        }
        if (writing) {
            return true;
        }
        lock.lock();
        try {
            return head != null;
        }
        finally {
            lock.unlock();
        }
    }

    @Override
    public void run()
    {
        NbdRequest batch;
        while ((batch = takeAll()) != null) {
            sendLock.lock();
            try {
                sendAll(batch);
            }
            finally {
                sendLock.unlock();
            }
        }
    }

    /** Every reply queued so far, linked through {@link NbdRequest#next}; {@code null} once stopped and drained. */
    private NbdRequest takeAll()
    {
        lock.lock();
        try {
            while (head == null && !stopping) {
                queued.awaitUninterruptibly();
            }
            NbdRequest batch = head;
            head = null;
            tail = null;
            return batch;
        }
        finally {
            lock.unlock();
        }
    }

    /**
     * Writes and recycles the replies linked from {@code batch}. Under {@link #sendLock}. A request is
     * recycled once a write has taken all of its buffers, so a long batch gives pages back as it goes.
     */
    private void sendAll(NbdRequest batch)
    {
        writing = true;
        try {
            NbdRequest first = batch;
            NbdRequest next;
            for (NbdRequest request = batch; request != null; request = next) {
                next = request.next;
                long writes = progress;
                add(request);
                if (progress != writes) {
                    // Writes went out while adding this reply: the earlier ones are all sent.
                    first = recycle(first, request);
                }
            }
            flush();
            recycle(first, null);
        }
        finally {
            writing = false;
        }
    }

    /** Recycles the requests of {@code [first, end)} and returns {@code end}. */
    private NbdRequest recycle(NbdRequest first, NbdRequest end)
    {
        NbdRequest request = first;
        while (request != end) {
            NbdRequest next = request.next;
            request.next = null;
            pool.recycle(request);
            request = next;
        }
        return end;
    }

    /** Adds the buffers of the request's reply to the gather array, writing whenever it must. */
    private void add(NbdRequest request)
    {
        if (request.error != 0) {
            counters.error();
        }
        addReply(request);
    }

    @Override
    public void gather(ByteBuffer buffer)
    {
        if (count == MAX_GATHER) {
            flush();
        }
        gather[count++] = buffer;
    }

    /** Writes {@code gather[0, count)} unless the connection broke, and clears it. */
    @Override
    public void flush()
    {
        if (!broken && count > 0) {
            try {
                int first = 0;
                while (first < count) {
                    writeSome(first);
                    while (first < count && !gather[first].hasRemaining()) {
                        first++;
                    }
                }
            }
            catch (IOException e) {
                broken = true;
                log.debug("{}: cannot send replies, dropping them: {}", peer, e.toString());
                try {
                    // The reader must stop too: nobody will see the replies of further requests.
                    channel.shutdownInput();
                }
                catch (IOException ignored) {
                    // already closed
                }
            }
        }
        for (int i = 0; i < count; i++) {
            gather[i] = null;
        }
        count = 0;
    }

    /**
     * One socket write of at most {@link #MAX_WRITE} bytes from {@code gather[first, count)}. A
     * blocking write returns only once all it was given is sent, so without the cap a client that
     * reads a 32 MiB reply slowly would look to the reply watchdog like one that stopped reading.
     */
    private void writeSome(int first)
            throws IOException
    {
        long total = 0;
        int end = first;
        ByteBuffer cut = null;
        int limit = 0;
        while (end < count) {
            ByteBuffer buffer = gather[end++];
            if (total + buffer.remaining() > MAX_WRITE) {
                cut = buffer;
                limit = buffer.limit();
                buffer.limit(buffer.position() + (int) (MAX_WRITE - total));
                break;
            }
            total += buffer.remaining();
        }
        try {
            channel.write(gather, first, end - first);
        }
        finally {
            if (cut != null) {
                cut.limit(limit);
            }
        }
        progress++;
    }
}
