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
 * request into a list; this thread does the blocking socket write (header and page buffers in one
 * gathering write) and recycles the request afterwards.
 *
 * <p>After a failed write (the client went away) replies are dropped but requests are still
 * recycled, so pages and budget come back and the reader can finish.
 */
final class NbdReplyWriter
        implements Runnable
{
    private static final Logger log = LoggerFactory.getLogger(NbdReplyWriter.class);

    private final NbdChannel channel;
    private final NbdTransmission transmission;
    private final String peer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition queued = lock.newCondition();
    private NbdRequest head;
    private NbdRequest tail;
    private boolean stopping;
    private boolean broken;

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
        NbdRequest request;
        while ((request = take()) != null) {
            if (!broken) {
                try {
                    write(request);
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
            transmission.recycle(request);
        }
    }

    private NbdRequest take()
    {
        lock.lock();
        try {
            while (head == null && !stopping) {
                queued.awaitUninterruptibly();
            }
            NbdRequest request = head;
            if (request != null) {
                head = request.next;
                if (head == null) {
                    tail = null;
                }
                request.next = null;
            }
            return request;
        }
        finally {
            lock.unlock();
        }
    }

    private void write(NbdRequest request)
            throws IOException
    {
        ByteBuffer header = request.replyHeader.clear()
                .putInt(SIMPLE_REPLY_MAGIC)
                .putInt(request.error)
                .putLong(request.cookie)
                .flip();
        if (request.type != CMD_READ || request.error != 0 || request.nrPages == 0) {
            while (header.hasRemaining()) {
                channel.write(header);
            }
            return;
        }
        request.preparePageBuffers();
        ByteBuffer[] gather = request.gather;
        gather[0] = header;
        for (int i = 0; i < request.nrPages; i++) {
            gather[i + 1] = request.pages[i].buffer();
        }
        int count = request.nrPages + 1;
        int first = 0;
        while (first < count) {
            channel.write(gather, first, count - first);
            while (first < count && !gather[first].hasRemaining()) {
                first++;
            }
        }
        for (int i = 0; i < count; i++) {
            gather[i] = null;
        }
    }
}
