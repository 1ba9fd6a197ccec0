package dev.jloop.ublk;

import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.RingBorrower;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The boundary between the ublk server and the kernel: the control device, a device's character
 * device with its descriptor arrays, and the per-queue rings. {@link UringUblkDriver} is the real one;
 * tests supply a fake that plays the driver's side.
 */
interface UblkDriver
{
    /** Opens {@code /dev/ublk-control} with an SQE128 ring. */
    ControlChannel openControl()
            throws IOException;

    /** Opens {@code /dev/ublkcN}, the character device of device {@code devId}. */
    CharDevice openCharDevice(int devId)
            throws IOException;

    /**
     * Writes the dirty page cache of {@code /dev/ublkbN} back through the queues and flushes it (open
     * and fsync), so that what was written to the disk reaches the backend while the queues still
     * serve; returns when the kernel says it is done. May block as long as the writeback takes.
     */
    void syncBlockDevice(int devId)
            throws IOException;

    /** Control commands, one at a time. */
    interface ControlChannel
            extends Closeable
    {
        /**
         * Issues one control command ({@code cmdOp}, legacy or ioctl-encoded) with the 32 bytes of
         * {@code struct ublksrv_ctrl_cmd} in {@code ctrlCmd} and waits for its completion. Returns
         * {@code cqe.res}: 0 or more on success, {@code -errno} on failure. May block as long as the
         * kernel does (START_DEV waits for every queue); callers bound it with a timeout.
         */
        int execute(int cmdOp, ByteBuffer ctrlCmd)
                throws IOException;

        @Override
        void close();
    }

    /** An opened {@code /dev/ublkcN}. Only one opener is allowed by the kernel. */
    interface CharDevice
            extends Closeable
    {
        /** Maps the read-only array of {@code depth} {@code struct ublksrv_io_desc} of queue {@code queueId}. */
        IoDescriptors mapDescriptors(int queueId, int depth)
                throws IOException;

        /** A ring for one queue's I/O commands, able to hold {@code depth} commands and a wakeup read. */
        QueueRing openQueueRing(int depth)
                throws IOException;

        /**
         * As {@link #openQueueRing(int)}, with room for the file operations of {@code depth} requests
         * besides, and {@code file} registered, so that the queue can lend the ring to the file
         * ({@link QueueRing#lentRing()}). Called on the queue's thread. A driver that cannot do it
         * opens the plain ring.
         */
        default QueueRing openQueueRing(int depth, RingBorrower file)
                throws IOException
        {
            return openQueueRing(depth);
        }

        @Override
        void close();
    }

    /** The mapped descriptor array of one queue. */
    interface IoDescriptors
            extends Closeable
    {
        /** Native-order view, indexed by {@code tag * 24}. */
        ByteBuffer buffer();

        @Override
        void close();
    }

    /**
     * One queue's ring. Everything but {@link #wakeup()} is called only from the queue's own thread:
     * the kernel binds each tag to the task that fetched it.
     */
    interface QueueRing
            extends Closeable
    {
        /** Writes an URING_CMD SQE with {@code struct ublksrv_io_cmd}; {@code false} when the SQ is full. */
        boolean prepIoCmd(int cmdOp, int queueId, int tag, int result, long addr, long userData);

        /** Arms the wakeup: a CQE with {@code userData} arrives after the next {@link #wakeup()}. */
        boolean prepWakeup(long userData);

        /** Any thread: makes the armed wakeup complete. */
        void wakeup();

        /** Submits what was prepared and waits until at least {@code waitNr} CQEs are ready. */
        int submitAndWait(int waitNr)
                throws IOException;

        int reap(CompletionHandler handler)
                throws IOException;

        /**
         * The ring as the queue's thread lends it to its file, when it was opened for one
         * ({@link CharDevice#openQueueRing(int, RingBorrower)}); else {@code null}. The queue's own
         * commands keep their room: the file gets what is left.
         */
        default LentRing lentRing()
        {
            return null;
        }

        @Override
        void close();
    }
}
