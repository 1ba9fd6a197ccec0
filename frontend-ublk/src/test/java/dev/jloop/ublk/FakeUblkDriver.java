package dev.jloop.ublk;

import com.kenai.jffi.MemoryIO;
import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.uring.CompletionHandler;
import dev.jloop.uring.LentRing;
import dev.jloop.uring.Ring;
import dev.jloop.uring.RingBorrower;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Plays the kernel's side of ublk in memory, after {@code drivers/block/ublk_drv.c}: control commands
 * with their structs read from and written to the caller's memory, FETCH/COMMIT_AND_FETCH per tag
 * with the owner-task rule, request injection with data copied into and out of the tag's buffer, and
 * the abort of every fetched tag at STOP_DEV. Everything that happens is appended to {@link #events()}.
 */
final class FakeUblkDriver
        implements UblkDriver
{
    /** What GET_FEATURES answers; {@code null} makes it fail with -EINVAL (a kernel before 6.5). */
    volatile Long features = 0x1feL;
    /** Ioctl-encoded commands are refused with -EINVAL (a kernel before 6.4). */
    volatile boolean legacyOnly;
    /** Whether a queue whose file takes a lent ring gets a real one for the file's operations. */
    volatile boolean lendRings = true;
    volatile int addDevResult;
    volatile int openControlErrno;
    /** START_DEV never returns (a hung driver). */
    volatile boolean startHangs;
    /** DEL_DEV_ASYNC is known (Linux 6.9+). */
    volatile boolean asyncDelete = true;
    /** Something else holds the device (a mounted file system): DEL_DEV waits, the id stays taken. */
    volatile boolean referenced;
    /** The kernel clamps queues to this (CPUs). */
    volatile int maxQueues = 64;
    /** The disk's dirty page cache: written back by an fsync of /dev/ublkbN, or else by STOP_DEV (del_gendisk). */
    final List<Dirty> dirty = Collections.synchronizedList(new ArrayList<>());
    /** Dirtied after the sync, as by a writer still running: STOP_DEV finds it dirty. */
    final List<Dirty> dirtyAtStop = Collections.synchronizedList(new ArrayList<>());
    /** When set, STOP_DEV waits for it (after its writeback) before it aborts the tags: a stuck driver. */
    volatile CountDownLatch stopRelease;

    /** A dirty page cache range: {@code data} for the disk at {@code sector}. */
    record Dirty(long sector, byte[] data) {}

    private final List<String> events = Collections.synchronizedList(new ArrayList<>());
    final List<byte[]> controlCommands = Collections.synchronizedList(new ArrayList<>());
    final List<Integer> controlOps = Collections.synchronizedList(new ArrayList<>());
    volatile byte[] addDevInfo;
    volatile byte[] params;
    volatile long startPid;

    private final ThreadLocal<FakeQueue> mappedByThisThread = new ThreadLocal<>();
    private final List<FakeQueue> queues = Collections.synchronizedList(new ArrayList<>());
    private volatile int nrQueues;
    private volatile int depth;
    private volatile boolean charOpen;
    private volatile boolean stopped;
    private volatile boolean deleted;
    private volatile boolean added;
    /** ublksrv_ctrl_dev_info as the kernel keeps it. */
    private volatile int state = UblkCmd.DEV_DEAD;
    private volatile long devFlags;
    private volatile int devPid;
    private volatile int devId = -1;
    private volatile int maxIoBufBytes;
    /** Requests in flight when the server died, issued again after END_USER_RECOVERY (REISSUE). */
    private final List<long[]> inFlightAtDeath = Collections.synchronizedList(new ArrayList<>());
    private final List<byte[]> inFlightData = Collections.synchronizedList(new ArrayList<>());
    /** Tags on the new queues the reissued requests went to, in order: queue, tag. */
    final List<int[]> reissued = Collections.synchronizedList(new ArrayList<>());

    int state()
    {
        return state;
    }

    long deviceFlags()
    {
        return devFlags;
    }

    /**
     * The server process dies without a word (SIGKILL): its rings and character device go away, the
     * fetched tags are cancelled, and the device waits for a new server (QUIESCED) when it was made
     * with USER_RECOVERY; without it the disk is removed and its I/O fails (DEAD). Its queue threads
     * get a failing ring and end.
     */
    void crash()
    {
        synchronized (queues) {
            for (FakeQueue queue : queues) {
                if (queue != null) {
                    queue.die();
                }
            }
        }
        charOpen = false;
        state = (devFlags & UblkCmd.F_USER_RECOVERY) != 0 ? UblkCmd.DEV_QUIESCED : UblkCmd.DEV_DEAD;
        event("crash");
    }

    List<String> events()
    {
        synchronized (events) {
            return List.copyOf(events);
        }
    }

    private void event(String event)
    {
        events.add(event);
    }

    FakeQueue queue(int q)
    {
        return queues.get(q);
    }

    boolean charDeviceOpen()
    {
        return charOpen;
    }

    @Override
    public ControlChannel openControl()
            throws IOException
    {
        if (openControlErrno != 0) {
            throw new UblkException("open /dev/ublk-control", -openControlErrno, null);
        }
        event("open-control");
        return new ControlChannel()
        {
            @Override
            public int execute(int cmdOp, ByteBuffer ctrlCmd)
            {
                byte[] bytes = new byte[UblkCmd.CTRL_CMD_SIZE];
                ctrlCmd.duplicate().position(0).get(bytes);
                controlOps.add(cmdOp);
                controlCommands.add(bytes);
                return control(cmdOp, ctrlCmd.duplicate().order(ByteOrder.nativeOrder()));
            }

            @Override
            public void close()
            {
                event("close-control");
            }
        };
    }

    private int control(int cmdOp, ByteBuffer cmd)
    {
        boolean ioctl = (cmdOp >>> 8 & 0xff) == 'u';
        if (ioctl && legacyOnly) {
            return -Errors.EINVAL;
        }
        int nr = cmdOp & 0xff;
        int devId = cmd.getInt(0);
        int len = cmd.getShort(6) & 0xffff;
        long addr = cmd.getLong(8);
        event(UblkCmd.controlName(nr));
        switch (nr) {
            case UblkCmd.CMD_GET_FEATURES:
                if (features == null) {
                    return -Errors.EINVAL;
                }
                memory(addr, 8).putLong(0, features);
                return 0;
            case UblkCmd.CMD_ADD_DEV: {
                if (addDevResult != 0) {
                    return addDevResult;
                }
                ByteBuffer info = memory(addr, len);
                byte[] copy = new byte[len];
                info.duplicate().get(copy);
                addDevInfo = copy;
                if (info.getInt(12) != devId) {
                    return -Errors.EINVAL;
                }
                int id = devId == -1 ? 0 : devId;
                info.putInt(12, id);
                nrQueues = Math.min(info.getShort(0), maxQueues);
                info.putShort(0, (short) nrQueues);
                depth = info.getShort(2);
                // flags the kernel does not know are cleared
                long known = features == null ? 0x1fL : features;
                info.putLong(24, (info.getLong(24) & known) | UblkCmd.F_URING_CMD_COMP_IN_TASK);
                devFlags = info.getLong(24);
                this.devId = id;
                maxIoBufBytes = info.getInt(8);
                added = true;
                state = UblkCmd.DEV_DEAD;
                return 0;
            }
            case UblkCmd.CMD_SET_PARAMS: {
                byte[] copy = new byte[len];
                memory(addr, len).get(copy);
                params = copy;
                return 0;
            }
            case UblkCmd.CMD_START_DEV:
                startPid = cmd.getLong(16);
                if (startHangs) {
                    try {
                        new CountDownLatch(1).await();
                    }
                    catch (InterruptedException e) {
                        return -Errors.EINTR;
                    }
                }
                for (FakeQueue queue : queues) {
                    if (queue.fetchedTags() != depth) {
                        return -Errors.EINVAL;
                    }
                }
                if (queues.size() != nrQueues) {
                    return -Errors.EINVAL;
                }
                state = UblkCmd.DEV_LIVE;
                devPid = (int) startPid;
                return 0;
            case UblkCmd.CMD_START_USER_RECOVERY:
                if (!added || deleted) {
                    return -Errors.ENODEV;
                }
                if ((devFlags & UblkCmd.F_USER_RECOVERY) == 0) {
                    return -Errors.EINVAL;
                }
                if (state != UblkCmd.DEV_QUIESCED || charOpen) {
                    return -Errors.EBUSY;
                }
                queues.clear();
                return 0;
            case UblkCmd.CMD_END_USER_RECOVERY: {
                if (state != UblkCmd.DEV_QUIESCED) {
                    return -Errors.EBUSY;
                }
                for (FakeQueue queue : queues) {
                    if (queue == null || queue.fetchedTags() != depth) {
                        return -Errors.EINVAL;
                    }
                }
                if (queues.size() != nrQueues) {
                    return -Errors.EINVAL;
                }
                state = UblkCmd.DEV_LIVE;
                devPid = (int) cmd.getLong(16);
                startPid = devPid;
                try {
                    synchronized (inFlightAtDeath) {
                        for (int i = 0; i < inFlightAtDeath.size(); i++) {
                            long[] request = inFlightAtDeath.get(i);
                            FakeQueue queue = queue((int) request[0]);
                            int tag = queue.dispatch((int) request[1], request[2], (int) request[3], inFlightData.get(i));
                            reissued.add(new int[] {(int) request[0], tag});
                        }
                        inFlightAtDeath.clear();
                        inFlightData.clear();
                    }
                }
                catch (InterruptedException e) {
                    return -Errors.EINTR;
                }
                return 0;
            }
            case UblkCmd.CMD_STOP_DEV:
                // del_gendisk writes back the page cache through the live queues before the disk goes
                dirty.addAll(dirtyAtStop);
                try {
                    writeBack();
                    if (stopRelease != null) {
                        stopRelease.await();
                    }
                }
                catch (InterruptedException e) {
                    return -Errors.EINTR;
                }
                stopped = true;
                for (FakeQueue queue : queues) {
                    queue.abortAll();
                }
                // a quiesced device's waiting requests fail (ublk_drv's ublk_unquiesce_dev aborts them)
                inFlightAtDeath.clear();
                inFlightData.clear();
                state = UblkCmd.DEV_DEAD;
                return 0;
            case UblkCmd.CMD_DEL_DEV:
                if (charOpen) {
                    // the real DEL_DEV would wait for /dev/ublkcN; a server that deletes first hangs
                    return -Errors.EBUSY;
                }
                deleted = true;
                if (referenced) {
                    try {
                        new CountDownLatch(1).await();
                    }
                    catch (InterruptedException e) {
                        return -Errors.EINTR;
                    }
                }
                return 0;
            case UblkCmd.CMD_DEL_DEV_ASYNC:
                if (!asyncDelete) {
                    return -Errors.EINVAL;
                }
                if (charOpen) {
                    return -Errors.EBUSY;
                }
                deleted = true;
                return 0;
            case UblkCmd.CMD_GET_DEV_INFO:
                if (!added || (deleted && !referenced) || devId != this.devId) {
                    return -Errors.ENODEV;
                }
                new UblkStructs.DevInfo(nrQueues, depth, state, maxIoBufBytes, this.devId, devPid, devFlags, 0, 0).write(memory(addr, len));
                return 0;
            default:
                return -Errors.EINVAL;
        }
    }

    @Override
    public void syncBlockDevice(int devId)
            throws IOException
    {
        event("sync " + devId);
        try {
            if (writeBack() > 0) {
                FakeQueue queue = queue(0);
                int tag = queue.dispatch(UblkCmd.OP_FLUSH, 0, 0, null);
                int res = queue.awaitCommit(tag);
                event("flush " + res);
                if (res < 0) {
                    throw new IOException("fsync /dev/ublkb" + devId + ": " + res);
                }
            }
        }
        catch (InterruptedException e) {
            throw new IOException(e);
        }
    }

    /** Writes every dirty range as a WRITE request on queue 0, one at a time; returns how many. */
    private int writeBack()
            throws InterruptedException
    {
        int n = 0;
        while (true) {
            Dirty range;
            synchronized (dirty) {
                if (dirty.isEmpty()) {
                    break;
                }
                range = dirty.remove(0);
            }
            FakeQueue queue = queue(0);
            int tag = queue.dispatch(UblkCmd.OP_WRITE, range.sector(), range.data().length >> 9, range.data());
            int res = queue.awaitCommit(tag);
            if (res != range.data().length) {
                throw new AssertionError("writeback of sector " + range.sector() + " got " + res);
            }
            n++;
        }
        event("writeback " + n);
        return n;
    }

    static ByteBuffer memory(long address, int length)
    {
        return MemoryIO.getInstance().newDirectByteBuffer(address, length).order(ByteOrder.nativeOrder());
    }

    @Override
    public CharDevice openCharDevice(int devId)
    {
        charOpen = true;
        event("open-char " + devId);
        return new CharDevice()
        {
            @Override
            public IoDescriptors mapDescriptors(int queueId, int depth)
            {
                FakeQueue queue = new FakeQueue(queueId, depth);
                mappedByThisThread.set(queue);
                synchronized (queues) {
                    while (queues.size() <= queueId) {
                        queues.add(null);
                    }
                    queues.set(queueId, queue);
                }
                event("map " + queueId);
                return new IoDescriptors()
                {
                    @Override
                    public ByteBuffer buffer()
                    {
                        return queue.descriptors;
                    }

                    @Override
                    public void close()
                    {
                        event("unmap " + queueId);
                    }
                };
            }

            @Override
            public QueueRing openQueueRing(int depth)
            {
                return mappedByThisThread.get();
            }

            /** The fake's commands as always, and a real ring of 8 SQEs beside them for the file's operations. */
            @Override
            public QueueRing openQueueRing(int depth, RingBorrower file)
                    throws IOException
            {
                FakeQueue queue = mappedByThisThread.get();
                if (lendRings) {
                    queue.lendRealRing(file);
                }
                return queue;
            }

            @Override
            public void close()
            {
                charOpen = false;
                event("close-char");
            }
        };
    }

    /** One queue of the fake device, and its ring. */
    final class FakeQueue
            implements QueueRing
    {
        final int queueId;
        final int depth;
        final ByteBuffer descriptors;
        private final Deque<long[]> cqes = new ArrayDeque<>();
        private final List<long[]> submitted = new ArrayList<>();
        private final List<long[]> prepared = new ArrayList<>();
        private final boolean[] fetched;
        private final long[] bufferAddress;
        private final List<long[]> commits = new ArrayList<>();
        private final List<long[]> rejected = new ArrayList<>();
        private Thread owner;
        private long wakeupArmed = -1;
        private long wakeupCount;
        private boolean closed;
        /** The next submit fails, as a ring whose io_uring_enter errs. */
        volatile boolean failSubmit;
        /** Wakeups that reached this ring after it was closed: with a real eventfd, a write to a reused fd. */
        private int wakeupsAfterClose;
        /** Per tag, the request the server has and not yet committed: op_flags, start sector, sectors. */
        private final long[][] outstanding;
        private final byte[][] outstandingData;
        private boolean dead;
        /** The real ring that carries the file's operations, when the queue lends one; queue thread only. */
        private Ring realRing;
        private LentRing lent;

        FakeQueue(int queueId, int depth)
        {
            this.queueId = queueId;
            this.depth = depth;
            this.descriptors = ByteBuffer.allocateDirect(depth * UblkCmd.IO_DESC_SIZE).order(ByteOrder.nativeOrder());
            this.fetched = new boolean[depth];
            this.bufferAddress = new long[depth];
            this.outstanding = new long[depth][];
            this.outstandingData = new byte[depth][];
        }

        /** The process that owns this ring died: what it had in flight is kept for a reissue, nothing is fetched any more. */
        synchronized void die()
        {
            dead = true;
            for (int tag = 0; tag < depth; tag++) {
                fetched[tag] = false;
                if (outstanding[tag] != null) {
                    inFlightAtDeath.add(new long[] {queueId, outstanding[tag][0], outstanding[tag][1], outstanding[tag][2]});
                    inFlightData.add(outstandingData[tag]);
                    outstanding[tag] = null;
                }
            }
            notifyAll();
        }

        synchronized int fetchedTags()
        {
            int n = 0;
            for (boolean f : fetched) {
                n += f ? 1 : 0;
            }
            return n;
        }

        void lendRealRing(RingBorrower file)
                throws NativeIoException
        {
            realRing = Ring.builder(8).open();
            realRing.registerFiles(file.fileDescriptor());
            lent = new LentRing(realRing, Thread.currentThread(), 0, 0);
        }

        @Override
        public LentRing lentRing()
        {
            return lent;
        }

        /** The file's operations submitted on the real ring so far. */
        long realRingSubmits()
        {
            return realRing == null ? 0 : realRing.submitCalls();
        }

        @Override
        public synchronized boolean prepIoCmd(int cmdOp, int queueId, int tag, int result, long addr, long userData)
        {
            ByteBuffer cmd = ByteBuffer.allocate(UblkCmd.IO_CMD_SIZE).order(ByteOrder.nativeOrder());
            UblkStructs.putIoCmd(cmd, 0, queueId, tag, result, addr);
            prepared.add(new long[] {cmdOp, cmd.getShort(0), cmd.getShort(2), cmd.getInt(4), cmd.getLong(8), userData});
            return true;
        }

        @Override
        public synchronized boolean prepWakeup(long userData)
        {
            if (wakeupCount > 0) {
                wakeupCount = 0;
                cqes.add(new long[] {userData, 8});
                notifyAll();
            }
            else {
                wakeupArmed = userData;
            }
            return true;
        }

        @Override
        public synchronized void wakeup()
        {
            if (closed) {
                wakeupsAfterClose++;
                return;
            }
            if (wakeupArmed >= 0) {
                cqes.add(new long[] {wakeupArmed, 8});
                wakeupArmed = -1;
                notifyAll();
            }
            else {
                wakeupCount++;
            }
        }

        @Override
        public synchronized int submitAndWait(int waitNr)
                throws IOException
        {
            if (failSubmit || dead) {
                throw new IOException("fake ring: io_uring_enter failed");
            }
            int n = prepared.size();
            for (long[] sqe : prepared) {
                issue(sqe);
            }
            prepared.clear();
            if (realRing != null) {
                n += Math.max(0, realRing.submit());
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (cqes.size() + (realRing == null ? 0 : realRing.cqReady()) < waitNr && !closed && !dead) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new IOException("fake ring: no completion within 30 s");
                }
                try {
                    // the real ring's completions notify nobody: look again every millisecond
                    TimeUnit.NANOSECONDS.timedWait(this, realRing == null ? left : Math.min(left, 1_000_000L));
                }
                catch (InterruptedException e) {
                    throw new IOException(e);
                }
            }
            return n;
        }

        private void issue(long[] sqe)
        {
            int cmdOp = (int) sqe[0];
            int tag = (int) sqe[2];
            int nr = cmdOp & 0xff;
            boolean ioctl = (cmdOp >>> 8 & 0xff) == 'u';
            submitted.add(sqe);
            if ((ioctl && legacyOnly) || sqe[1] != queueId || tag < 0 || tag >= depth) {
                reject(sqe, -Errors.EINVAL);
                return;
            }
            if (nr != UblkCmd.IO_FETCH_REQ && nr != UblkCmd.IO_COMMIT_AND_FETCH_REQ) {
                reject(sqe, -Errors.EINVAL);
                return;
            }
            if (owner == null && nr == UblkCmd.IO_FETCH_REQ) {
                owner = Thread.currentThread();
            }
            // ublk_drv: a command from another task than the queue's daemon is refused
            if (Thread.currentThread() != owner) {
                reject(sqe, -Errors.EINVAL);
                return;
            }
            if (fetched[tag]) {
                // a second FETCH of a tag, or a COMMIT of a tag that has no request
                reject(sqe, nr == UblkCmd.IO_FETCH_REQ ? -Errors.EBUSY : -Errors.EINVAL);
                return;
            }
            if (nr == UblkCmd.IO_COMMIT_AND_FETCH_REQ) {
                outstanding[tag] = null;
                outstandingData[tag] = null;
                commits.add(new long[] {tag, sqe[3], sqe[4]});
                notifyAll();
            }
            fetched[tag] = true;
            bufferAddress[tag] = sqe[4];
            if (stopped) {
                abort(tag);
            }
        }

        private void reject(long[] sqe, int res)
        {
            rejected.add(sqe);
            cqes.add(new long[] {sqe[5], res});
            notifyAll();
        }

        private void abort(int tag)
        {
            if (fetched[tag]) {
                fetched[tag] = false;
                cqes.add(new long[] {tag, -Errors.ENODEV});
                notifyAll();
            }
        }

        synchronized void abortAll()
        {
            for (int tag = 0; tag < depth; tag++) {
                abort(tag);
            }
        }

        @Override
        public int reap(CompletionHandler handler)
                throws IOException
        {
            int n = 0;
            while (true) {
                long[] cqe;
                synchronized (this) {
                    cqe = cqes.poll();
                }
                if (cqe == null) {
                    return realRing == null ? n : n + realRing.reap(handler);
                }
                n++;
                handler.handle(cqe[0], (int) cqe[1], 0);
            }
        }

        @Override
        public synchronized void close()
        {
            closed = true;
            // io_uring cancels the uring_cmds of a closing ring; the tags are no longer fetched
            for (int tag = 0; tag < depth; tag++) {
                fetched[tag] = false;
            }
            notifyAll();
            if (realRing != null) {
                realRing.close();
            }
            event("close-ring " + queueId);
        }

        /**
         * Dispatches a request to {@code tag} as the kernel would: fills its descriptor, copies WRITE
         * data into the tag's buffer, completes the fetch with 0.
         */
        synchronized void request(int tag, int opFlags, long startSector, int nrSectors, byte[] writeData)
        {
            if (!fetched[tag]) {
                throw new IllegalStateException("tag " + tag + " is not fetched");
            }
            int base = tag * UblkCmd.IO_DESC_SIZE;
            descriptors.putInt(base, opFlags);
            descriptors.putInt(base + 4, nrSectors);
            descriptors.putLong(base + 8, startSector);
            descriptors.putLong(base + 16, 0);
            if (writeData != null) {
                memory(bufferAddress[tag], writeData.length).put(writeData);
            }
            outstanding[tag] = new long[] {opFlags, startSector, nrSectors};
            outstandingData[tag] = writeData;
            fetched[tag] = false;
            cqes.add(new long[] {tag, 0});
            notifyAll();
        }

        /** Dispatches a request to the first tag that is fetched, waiting up to 10 s for one; returns the tag. */
        synchronized int dispatch(int opFlags, long startSector, int nrSectors, byte[] writeData)
                throws InterruptedException
        {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (true) {
                for (int tag = 0; tag < depth; tag++) {
                    if (fetched[tag]) {
                        request(tag, opFlags, startSector, nrSectors, writeData);
                        return tag;
                    }
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new AssertionError("no fetched tag on queue " + queueId);
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
        }

        synchronized int wakeupsAfterClose()
        {
            return wakeupsAfterClose;
        }

        /** Waits for the commit of {@code tag}'s request; returns its result. */
        synchronized int awaitCommit(int tag)
                throws InterruptedException
        {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (true) {
                for (int i = 0; i < commits.size(); i++) {
                    if (commits.get(i)[0] == tag) {
                        return (int) commits.remove(i)[1];
                    }
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new AssertionError("no commit of tag " + tag);
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
        }

        /** The first {@code length} bytes of the tag's buffer (READ data the server committed). */
        synchronized byte[] buffer(int tag, int length)
        {
            byte[] data = new byte[length];
            memory(bufferAddress[tag], length).get(data);
            return data;
        }

        synchronized boolean isFetched(int tag)
        {
            return fetched[tag];
        }

        synchronized List<long[]> submitted()
        {
            return List.copyOf(submitted);
        }

        synchronized List<long[]> rejected()
        {
            return List.copyOf(rejected);
        }

        synchronized Thread owner()
        {
            return owner;
        }
    }
}
