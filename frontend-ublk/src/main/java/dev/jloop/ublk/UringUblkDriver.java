package dev.jloop.ublk;

import com.kenai.jffi.MemoryIO;
import dev.jloop.iter.DirectMemory;
import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.Ring;
import dev.jloop.uring.RingBorrower;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The real driver: {@code /dev/ublk-control} and {@code /dev/ublkcN} through io_uring URING_CMD
 * ({@code IORING_OP_URING_CMD}: {@code cmd_op} u32 @8 of the SQE, the command's payload @48; control
 * commands need {@link IoUring#SETUP_SQE128}, I/O commands fit a 64-byte SQE).
 */
final class UringUblkDriver
        implements UblkDriver
{
    static final String CONTROL_PATH = "/dev/ublk-control";
    private static final int SQE_CMD = 48;

    @Override
    public ControlChannel openControl()
            throws IOException
    {
        int fd = Posix.open(CONTROL_PATH, Posix.O_RDWR | Posix.O_CLOEXEC, 0);
        if (fd < 0) {
            throw new UblkException("open " + CONTROL_PATH, fd, null);
        }
        try {
            return new UringControl(fd, Ring.builder(4).flags(IoUring.SETUP_SQE128).open());
        }
        catch (IOException | RuntimeException e) {
            Posix.close(fd);
            throw e;
        }
    }

    @Override
    public CharDevice openCharDevice(int devId)
            throws IOException
    {
        String path = "/dev/ublkc" + devId;
        int fd = Posix.open(path, Posix.O_RDWR | Posix.O_CLOEXEC, 0);
        // devtmpfs creates the node as the device is added; udev may still be changing it
        for (int i = 0; i < 50 && fd == -Errors.ENOENT; i++) {
            sleep();
            fd = Posix.open(path, Posix.O_RDWR | Posix.O_CLOEXEC, 0);
        }
        if (fd < 0) {
            throw new UblkException("open " + path, fd, fd == -Errors.EBUSY ? "another process serves this device" : null);
        }
        return new UringCharDevice(fd);
    }

    @Override
    public void syncBlockDevice(int devId)
            throws IOException
    {
        // fsync of a block device is sync_blockdev plus a cache flush; read-only opens allow it too
        String path = "/dev/ublkb" + devId;
        int fd = Posix.open(path, Posix.O_RDONLY | Posix.O_CLOEXEC, 0);
        if (fd < 0) {
            throw new UblkException("open " + path, fd, null);
        }
        try {
            int res = Posix.fsync(fd);
            if (res < 0) {
                throw new UblkException("fsync " + path, res, null);
            }
        }
        finally {
            Posix.close(fd);
        }
    }

    private static void sleep()
            throws IOException
    {
        try {
            Thread.sleep(20);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
    }

    private static final class UringControl
            implements ControlChannel
    {
        private final int fd;
        private final Ring ring;
        private long nextUserData;

        UringControl(int fd, Ring ring)
        {
            this.fd = fd;
            this.ring = ring;
        }

        @Override
        public synchronized int execute(int cmdOp, ByteBuffer ctrlCmd)
                throws IOException
        {
            long userData = ++nextUserData;
            if (!ring.prep(IoUring.OP_URING_CMD, 0, fd, cmdOp & 0xffffffffL, 0, 0, 0, userData, 0)) {
                throw new IllegalStateException("control ring full");
            }
            ByteBuffer sqes = ring.sqeBuffer();
            int base = ring.lastSqeOffset() + SQE_CMD;
            for (int i = 0; i < UblkCmd.CTRL_CMD_SIZE; i++) {
                sqes.put(base + i, ctrlCmd.get(i));
            }
            ring.submitAndWait(1);
            int[] res = {Integer.MIN_VALUE};
            while (res[0] == Integer.MIN_VALUE) {
                ring.reap((data, result, flags) -> {
                    if (data == userData) {
                        res[0] = result;
                    }
                });
                if (res[0] == Integer.MIN_VALUE) {
                    ring.waitCompletions(1);
                }
            }
            return res[0];
        }

        @Override
        public void close()
        {
            ring.close();
            Posix.close(fd);
        }
    }

    private static final class UringCharDevice
            implements CharDevice
    {
        private final int fd;

        UringCharDevice(int fd)
        {
            this.fd = fd;
        }

        @Override
        public IoDescriptors mapDescriptors(int queueId, int depth)
                throws IOException
        {
            // exact length, PROT_READ only (PROT_WRITE is refused), one stride of UBLK_MAX_QUEUE_DEPTH descriptors per queue
            long length = roundUpToPage((long) depth * UblkCmd.IO_DESC_SIZE);
            long offset = queueId * roundUpToPage(UblkCmd.DESC_QUEUE_STRIDE);
            long address = Posix.mmap(length, Posix.PROT_READ, Posix.MAP_SHARED | Posix.MAP_POPULATE, fd, offset);
            if (address < 0) {
                throw new UblkException("mmap of the descriptors of queue " + queueId, address, null);
            }
            ByteBuffer view = MemoryIO.getInstance().newDirectByteBuffer(address, Math.toIntExact(length)).order(ByteOrder.nativeOrder());
            return new IoDescriptors()
            {
                @Override
                public ByteBuffer buffer()
                {
                    return view;
                }

                @Override
                public void close()
                {
                    Posix.munmap(address, length);
                }
            };
        }

        @Override
        public QueueRing openQueueRing(int depth)
                throws IOException
        {
            int eventFd = Posix.eventfd(0, Posix.EFD_CLOEXEC);
            if (eventFd < 0) {
                throw new UblkException("eventfd", eventFd, null);
            }
            try {
                return new UringQueueRing(fd, eventFd, Ring.builder(depth + 1).open(), null);
            }
            catch (NativeIoException | RuntimeException e) {
                Posix.close(eventFd);
                throw e;
            }
        }

        /** Every tag's command and the wakeup keep their room; the file gets as much again, as fixed file 0. */
        @Override
        public QueueRing openQueueRing(int depth, RingBorrower file)
                throws IOException
        {
            int eventFd = Posix.eventfd(0, Posix.EFD_CLOEXEC);
            if (eventFd < 0) {
                throw new UblkException("eventfd", eventFd, null);
            }
            Ring ring = null;
            try {
                ring = Ring.builder(2 * depth + 1).open();
                ring.registerFiles(file.fileDescriptor());
                return new UringQueueRing(fd, eventFd, ring, new LentRing(ring, Thread.currentThread(), depth + 1, 0));
            }
            catch (NativeIoException | RuntimeException e) {
                if (ring != null) {
                    ring.close();
                }
                Posix.close(eventFd);
                throw e;
            }
        }

        @Override
        public void close()
        {
            Posix.close(fd);
        }

        private static long roundUpToPage(long n)
        {
            return (n + DirectMemory.PAGE_SIZE - 1) / DirectMemory.PAGE_SIZE * DirectMemory.PAGE_SIZE;
        }
    }

    private static final class UringQueueRing
            implements QueueRing
    {
        private final int charFd;
        private final int eventFd;
        private final Ring ring;
        private final LentRing lent;
        /** The 8-byte counter a wakeup read lands in. */
        private final ByteBuffer wakeupRead = DirectMemory.allocateAligned(8);
        private final long wakeupReadAddress = DirectMemory.address(wakeupRead);
        /** The 8-byte value 1 a wakeup writes; never changes, so concurrent writers may share it. */
        private final ByteBuffer one = DirectMemory.allocateAligned(8).order(ByteOrder.nativeOrder()).putLong(0, 1);
        private final long oneAddress = DirectMemory.address(one);
        /** Guarded by this: once closed, the eventfd number may belong to another file and is never written. */
        private boolean closed;

        UringQueueRing(int charFd, int eventFd, Ring ring, LentRing lent)
        {
            this.charFd = charFd;
            this.eventFd = eventFd;
            this.ring = ring;
            this.lent = lent;
        }

        @Override
        public LentRing lentRing()
        {
            return lent;
        }

        @Override
        public boolean prepIoCmd(int cmdOp, int queueId, int tag, int result, long addr, long userData)
        {
            if (!ring.prep(IoUring.OP_URING_CMD, 0, charFd, cmdOp & 0xffffffffL, 0, 0, 0, userData, 0)) {
                return false;
            }
            UblkStructs.putIoCmd(ring.sqeBuffer(), ring.lastSqeOffset() + SQE_CMD, queueId, tag, result, addr);
            return true;
        }

        @Override
        public boolean prepWakeup(long userData)
        {
            return ring.prepRead(eventFd, 0, wakeupReadAddress, 8, 0, 0, userData);
        }

        @Override
        public synchronized void wakeup()
        {
            if (!closed) {
                Posix.write(eventFd, oneAddress, 8);
            }
        }

        @Override
        public int submitAndWait(int waitNr)
                throws IOException
        {
            return ring.submitAndWait(waitNr);
        }

        @Override
        public int reap(CompletionHandler handler)
                throws IOException
        {
            return ring.reap(handler);
        }

        @Override
        public void close()
        {
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
            }
            ring.close();
            Posix.close(eventFd);
        }
    }
}
