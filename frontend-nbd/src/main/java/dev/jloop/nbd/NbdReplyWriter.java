package dev.jloop.nbd;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;
import static java.util.Objects.requireNonNull;

/**
 * Sends the replies of one connection, in the order they are queued (completion order). Completions
 * run on device threads that must never wait for a slow client, so {@link #queue} only links the
 * request into a list; this thread does the blocking socket write and recycles the requests
 * afterwards. It takes every reply queued so far at once and sends their headers and page buffers
 * in one gathering write (up to {@value #MAX_GATHER} buffers), so a burst of completions costs
 * one system call, not one per reply.
 *
 * <p>After a failed write (the client went away) replies are dropped but requests are still
 * recycled, so pages and budget come back and the reader can finish.
 */
final class NbdReplyWriter
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(NbdReplyWriter.class);

    /** Buffers per gathering write: Linux's IOV_MAX. */
    static final int MAX_GATHER = 1024;

    private final NbdChannel channel;
    private final NbdTransmission transmission;
    private final String peer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition queued = lock.newCondition();
    private NbdRequest head;
    private NbdRequest tail;
    private boolean stopping;
    /** Held while replies are written: by this thread, or by the reader sending what completed in it. */
    private final ReentrantLock sendLock = new ReentrantLock();
    private boolean broken;
    private final ByteBuffer[] gather = new ByteBuffer[MAX_GATHER];

    NbdReplyWriter(NbdChannel channel, NbdTransmission transmission, String peer)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.transmission = requireNonNull(transmission, "transmission is null");
        this.peer = requireNonNull(peer, "peer is null");
    }

    /** Queues the reply of a completed request; never blocks on I/O. Any thread. */
    void queue(NbdRequest request)
    {
        request.next = null;
        lock.lock();
        try {
            if (tail == null) {
                head = request;
            }
            else {
                tail.next = request;
            }
            tail = request;
            queued.signal();
        }
        finally {
            lock.unlock();
        }
    }

    /**
     * The reader thread's replies (requests that completed while it submitted them, linked through
     * {@link NbdRequest#next}): it writes them itself when no write is under way, which saves waking
     * this thread; else they join the queue. Like nbdkit's threads, the reader then waits for a client
     * that does not read its replies, and reads no further requests meanwhile.
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

    /** Writes and recycles the replies linked from {@code batch}. Under {@link #sendLock}. */
    private void sendAll(NbdRequest batch)
    {
        {
            NbdRequest first = batch;
            int count = 0;
            NbdRequest next;
            for (NbdRequest request = batch; request != null; request = next) {
                next = request.next;
                int buffers = buffers(request);
                if (count > 0 && count + buffers > MAX_GATHER) {
                    first = send(first, request, count);
                    count = 0;
                }
                if (buffers > MAX_GATHER) {
                    // A READ in many small pages: its own writes, a gather array at a time.
                    count = add(request, 0, MAX_GATHER);
                    for (int page = MAX_GATHER - 1; page < request.nrPages; page += MAX_GATHER) {
                        writeQuietly(count);
                        count = 0;
                        for (int i = page; i < Math.min(request.nrPages, page + MAX_GATHER); i++) {
                            gather[count++] = request.pages[i].buffer();
                        }
                    }
                    first = send(first, next, count);
                    count = 0;
                    continue;
                }
                count = add(request, count, MAX_GATHER);
            }
            send(first, null, count);
        }
    }

    /** Writes the gathered replies of {@code [first, end)}, recycles them, and returns {@code end}. */
    private NbdRequest send(NbdRequest first, NbdRequest end, int count)
    {
        writeQuietly(count);
        NbdRequest request = first;
        while (request != end) {
            NbdRequest next = request.next;
            request.next = null;
            transmission.recycle(request);
            request = next;
        }
        return end;
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

    private static int buffers(NbdRequest request)
    {
        return hasPayload(request) ? request.nrPages + 1 : 1;
    }

    private static boolean hasPayload(NbdRequest request)
    {
        return request.type == CMD_READ && request.error == 0 && request.nrPages > 0;
    }

    /** Writes {@code gather[0, count)} unless the connection broke, and clears it. */
    private void writeQuietly(int count)
    {
        if (!broken && count > 0) {
            try {
                write(count);
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
    }

    /**
     * Adds the reply's header and, for a READ, its pages to the gather array from {@code count}, at most
     * up to {@code limit} buffers; returns the new count.
     */
    private int add(NbdRequest request, int count, int limit)
    {
        gather[count++] = request.replyHeader.clear()
                .putInt(SIMPLE_REPLY_MAGIC)
                .putInt(request.error)
                .putLong(request.cookie)
                .flip();
        if (hasPayload(request)) {
            request.preparePageBuffers();
            for (int i = 0; i < request.nrPages && count < limit; i++) {
                gather[count++] = request.pages[i].buffer();
            }
        }
        return count;
    }

    private void write(int count)
            throws IOException
    {
        int first = 0;
        while (first < count) {
            channel.write(gather, first, count - first);
            while (first < count && !gather[first].hasRemaining()) {
                first++;
            }
        }
    }
}
