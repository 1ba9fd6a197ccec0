package dev.jloop.uring;

import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.posix.Posix;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.jloop.uring.IoUringAssumptions.assumeIoUring;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class TestRing
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final List<AutoCloseable> closeables = new ArrayList<>();

    @BeforeEach
    void setUp()
    {
        assumeIoUring();
    }

    @AfterEach
    void tearDown()
            throws Exception
    {
        for (int i = closeables.size() - 1; i >= 0; i--) {
            closeables.get(i).close();
        }
    }

    private Ring ring(Ring.Builder builder)
            throws NativeIoException
    {
        Ring ring = builder.open();
        closeables.add(ring);
        return ring;
    }

    private int openFile(String name)
    {
        int fd = Posix.open(dir.resolve(name).toString(), Posix.O_RDWR | Posix.O_CREAT | Posix.O_CLOEXEC, 0644);
        assertTrue(fd >= 0, () -> "open " + name + ": " + Errors.name(fd));
        closeables.add(() -> Posix.close(fd));
        return fd;
    }

    private static ByteBuffer direct(int size)
    {
        // alignedSlice also rounds the end down: leave a whole page of slack past the end
        return ByteBuffer.allocateDirect(size + 2 * 4096).alignedSlice(4096).limit(size).slice();
    }

    private static long address(ByteBuffer buffer)
    {
        return jnr.ffi.Runtime.getSystemRuntime().getMemoryManager().newPointer(buffer).address();
    }

    /** Reaps until {@code n} CQEs arrived; returns {res} by user data 0..n-1. */
    private static int[] reapExactly(Ring ring, int n)
            throws NativeIoException
    {
        int[] res = new int[n];
        Arrays.fill(res, Integer.MIN_VALUE);
        int[] seen = {0};
        while (seen[0] < n) {
            ring.waitCompletions(1);
            ring.reap((userData, r, flags) -> {
                assertEquals(Integer.MIN_VALUE, res[(int) userData], "CQE twice for " + userData);
                res[(int) userData] = r;
                seen[0]++;
            });
        }
        return res;
    }

    @Test
    void layoutComesFromTheKernel()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(5));
        assertEquals(8, ring.sqEntries(), "rounded up to a power of two");
        assertEquals(16, ring.cqEntries(), "CQ twice the SQ by default");
        assertEquals(64, ring.sqeSize());
        assertEquals(16, ring.cqeSize());
        assertTrue(ring.isSupported(IoUring.OP_READ));
        assertTrue(ring.isSupported(IoUring.OP_FALLOCATE));
        assertFalse(ring.isSupported(255));
    }

    @Test
    @Timeout(60)
    void spliceMovesFileBytesThroughAPipeIntoASocket()
            throws Exception
    {
        byte[] data = new byte[300_000];
        new java.util.Random(17).nextBytes(data);
        Files.write(dir.resolve("splice"), data);
        int file = openFile("splice");
        ByteBuffer fds = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
        assertEquals(0, Posix.pipe2(address(fds), Posix.O_CLOEXEC));
        int pipeRead = fds.getInt(0);
        int pipeWrite = fds.getInt(4);
        closeables.add(() -> Posix.close(pipeRead));
        closeables.add(() -> Posix.close(pipeWrite));
        int size = Posix.fcntl(pipeWrite, Posix.F_SETPIPE_SZ, 128 << 10);
        assertEquals(128 << 10, size, "the pipe takes 128 KiB");
        assertEquals(size, Posix.fcntl(pipeRead, Posix.F_GETPIPE_SZ, 0));
        java.nio.channels.SocketChannel[] pair = socketPair();
        int socket = fdOf(pair[0]);

        Ring ring = ring(Ring.builder(8));
        assumeTrue(ring.isSupported(IoUring.OP_SPLICE), "IORING_OP_SPLICE needs Linux 5.7");
        ring.registerFiles(socket, file);
        // file -> pipe -> socket, linked, twice as much as the pipe holds
        long offset = 8192;
        int chunk = size;
        ByteBuffer received = ByteBuffer.allocate(2 * chunk);
        for (int i = 0; i < 2; i++) {
            assertTrue(ring.prepSplice(1, offset + (long) i * chunk, pipeWrite, -1, chunk,
                    IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_FD_IN_FIXED, IoUring.IOSQE_IO_LINK, 0));
            assertTrue(ring.prepSplice(pipeRead, -1, 0, -1, chunk, IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_MORE,
                    IoUring.IOSQE_FIXED_FILE, 1));
            assertEquals(2, ring.submit());
            // the socket buffer may hold less than the chunk: read while the splice runs
            while (received.position() < (i + 1) * chunk) {
                pair[1].read(received);
            }
            assertArrayEquals(new int[] {chunk, chunk}, reapExactly(ring, 2));
        }
        assertArrayEquals(Arrays.copyOfRange(data, (int) offset, (int) offset + 2 * chunk), received.array());

        // an unaligned start needs one slot more than the pipe's pages: the fill is short and goes on
        offset = 4097;
        received = ByteBuffer.allocate(chunk + 5000);
        long at = offset;
        int shortFills = 0;
        while (at < offset + received.capacity()) {
            int want = (int) Math.min(chunk, offset + received.capacity() - at);
            assertTrue(ring.prepSplice(1, at, pipeWrite, -1, want,
                    IoUring.SPLICE_F_MOVE | IoUring.SPLICE_F_NONBLOCK | IoUring.SPLICE_F_FD_IN_FIXED, 0, 0));
            assertEquals(1, ring.submit());
            int moved = reapExactly(ring, 1)[0];
            assertTrue(moved > 0, "fill: " + moved);
            if (moved < want) {
                shortFills++;
            }
            assertTrue(ring.prepSplice(pipeRead, -1, 0, -1, moved, IoUring.SPLICE_F_MOVE, IoUring.IOSQE_FIXED_FILE, 0));
            assertEquals(1, ring.submit());
            int target = (int) (at - offset) + moved;
            while (received.position() < target) {
                pair[1].read(received);
            }
            assertEquals(moved, reapExactly(ring, 1)[0]);
            at += moved;
        }
        assertTrue(shortFills > 0, "an unaligned pipe-full is short");
        assertArrayEquals(Arrays.copyOfRange(data, (int) offset, (int) offset + received.capacity()), received.array());

        // at the end of the file a splice is short, which cancels what is linked to it
        long tail = data.length - 1000;
        assertTrue(ring.prepSplice(1, tail, pipeWrite, -1, 4096, IoUring.SPLICE_F_FD_IN_FIXED, IoUring.IOSQE_IO_LINK, 0));
        assertTrue(ring.prepSplice(pipeRead, -1, 0, -1, 4096, 0, IoUring.IOSQE_FIXED_FILE, 1));
        assertEquals(2, ring.submit());
        assertArrayEquals(new int[] {1000, -Errors.ECANCELED}, reapExactly(ring, 2));
        // the pipe still holds the 1000 bytes; past the end, a splice moves nothing
        assertTrue(ring.prepSplice(pipeRead, -1, 0, -1, 1000, 0, IoUring.IOSQE_FIXED_FILE, 0));
        assertTrue(ring.prepSplice(1, data.length, pipeWrite, -1, 4096, IoUring.SPLICE_F_FD_IN_FIXED, 0, 1));
        assertEquals(2, ring.submit());
        assertArrayEquals(new int[] {1000, 0}, reapExactly(ring, 2));
        ByteBuffer last = ByteBuffer.allocate(1000);
        while (last.hasRemaining()) {
            pair[1].read(last);
        }
        assertArrayEquals(Arrays.copyOfRange(data, (int) tail, data.length), last.array());
    }

    /** A connected TCP pair on loopback, closed after the test. */
    private java.nio.channels.SocketChannel[] socketPair()
            throws IOException
    {
        try (java.nio.channels.ServerSocketChannel server = java.nio.channels.ServerSocketChannel.open()) {
            server.bind(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0));
            java.nio.channels.SocketChannel client = java.nio.channels.SocketChannel.open(server.getLocalAddress());
            closeables.add(client);
            java.nio.channels.SocketChannel accepted = server.accept();
            closeables.add(accepted);
            return new java.nio.channels.SocketChannel[] {client, accepted};
        }
    }

    /** The descriptor of a JDK socket channel, read as the NBD connection loop reads it (sun.misc.Unsafe, no --add-opens). */
    private static int fdOf(java.nio.channels.SocketChannel channel)
            throws ReflectiveOperationException
    {
        java.lang.reflect.Field field = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
        field.setAccessible(true);
        sun.misc.Unsafe unsafe = (sun.misc.Unsafe) field.get(null);
        long offset = unsafe.objectFieldOffset(Class.forName("sun.nio.ch.SocketChannelImpl").getDeclaredField("fdVal"));
        return unsafe.getInt(channel, offset);
    }

    @Test
    void withdrawTakesBackWhatTheKernelHasNotConsumed()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(4));
        // past a wrap of the 4-entry ring, so the SQE index is the masked position
        for (int i = 0; i < 3; i++) {
            assertTrue(ring.prepNop(i));
        }
        assertEquals(3, ring.submitAndWait(3));
        assertEquals(3, ring.reap((userData, res, flags) -> {}));
        assertTrue(ring.prepNop(10));
        assertTrue(ring.prepNop(11));
        ring.flush();
        assertTrue(ring.prepNop(12)); // written, not yet published
        List<Long> withdrawn = new ArrayList<>();
        assertEquals(3, ring.withdraw(withdrawn::add));
        assertEquals(List.of(10L, 11L, 12L), withdrawn);
        assertEquals(0, ring.sqPending());
        assertEquals(4, ring.sqSpace());
        // the kernel never sees them: the next submission is just the new one
        assertTrue(ring.prepNop(20));
        assertEquals(1, ring.submitAndWait(1));
        List<Long> reaped = new ArrayList<>();
        ring.reap((userData, res, flags) -> reaped.add(userData));
        assertEquals(List.of(20L), reaped);
    }

    @Test
    void wrapAroundOverManyNops()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(4));
        int total = 20_000;
        long[] next = {0};
        int submitted = 0;
        while (submitted < total) {
            // 3 per batch: head and tail wrap at every possible position of the 4-entry ring
            int batch = Math.min(3, total - submitted);
            for (int i = 0; i < batch; i++) {
                assertTrue(ring.prepNop(submitted + i));
            }
            submitted += batch;
            assertEquals(batch, ring.submitAndWait(batch));
            int reaped = ring.reap((userData, res, flags) -> {
                assertEquals(next[0]++, userData, "CQEs in order, none lost or repeated");
                assertEquals(0, res);
            });
            assertEquals(batch, reaped);
        }
        assertEquals(total, next[0]);
        assertEquals(4, ring.sqSpace());
    }

    @Test
    void fullSubmissionQueue()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(4));
        for (int i = 0; i < 4; i++) {
            assertTrue(ring.prepNop(i));
        }
        assertEquals(0, ring.sqSpace());
        assertFalse(ring.prepNop(99), "a full SQ refuses another SQE");
        assertEquals(4, ring.submit());
        assertEquals(4, ring.sqSpace(), "the kernel consumed every SQE");
        assertTrue(ring.prepNop(4));
        assertEquals(1, ring.submit());
        int[] res = reapExactly(ring, 5);
        assertArrayEquals(new int[5], res);
    }

    @Test
    void completionQueueOverflowLosesNothing()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(2).cqEntries(2));
        assertEquals(2, ring.cqEntries());
        int total = 64;
        for (int i = 0; i < total; i += 2) {
            assertTrue(ring.prepNop(i));
            assertTrue(ring.prepNop(i + 1));
            int res = ring.submit();
            assertTrue(res == 2 || res == -Errors.EBUSY, "submit: " + res);
            if (res < 0) {
                i -= 2;
                ring.reap((u, r, f) -> {});
                throw new AssertionError("kernel refused submission with a CQ backlog; NODROP=" + ((ring.features() & IoUring.FEAT_NODROP) != 0));
            }
        }
        assertTrue(ring.cqReady() <= 2, "the CQ holds at most its size; the rest waits in the kernel's overflow list");
        boolean[] seen = new boolean[total];
        int reaped = ring.reap((userData, res, flags) -> {
            assertFalse(seen[(int) userData], "twice: " + userData);
            seen[(int) userData] = true;
        });
        assertEquals(total, reaped, "overflowed CQEs are flushed and reaped");
        assertEquals(0, ring.cqOverflow(), "nothing dropped");
    }

    @Test
    void shortReadAtEndOfFile()
            throws IOException
    {
        Ring ring = ring(Ring.builder(4));
        byte[] content = new byte[5000];
        Arrays.fill(content, (byte) 7);
        Files.write(dir.resolve("short"), content);
        int fd = openFile("short");
        ByteBuffer buffer = direct(8192);
        assertTrue(ring.prepRead(fd, 0, address(buffer), 8192, 4096, 0, 0));
        assertTrue(ring.prepRead(fd, 0, address(buffer), 8192, 8192, 0, 1));
        ring.submit();
        int[] res = reapExactly(ring, 2);
        assertEquals(5000 - 4096, res[0], "short read at end of file");
        assertEquals(0, res[1], "read past end of file");
        assertEquals(7, buffer.get(0));
    }

    @Test
    void readWriteVectoredAndFixedOnAFile()
            throws IOException
    {
        Ring ring = ring(Ring.builder(8));
        int fd = openFile("data");
        ring.registerFiles(fd);

        ByteBuffer out = direct(16384);
        for (int i = 0; i < out.capacity(); i++) {
            out.put(i, (byte) (i * 31 + 5));
        }
        // WRITE of the first half through the plain fd, WRITEV of the second half as two iovecs on the fixed file
        ByteBuffer iov = direct(32).order(ByteOrder.nativeOrder());
        iov.putLong(0, address(out) + 8192).putLong(8, 4096).putLong(16, address(out) + 12288).putLong(24, 4096);
        assertTrue(ring.prepWrite(fd, 0, address(out), 8192, 0, 0, 0));
        assertTrue(ring.prepWritev(0, IoUring.IOSQE_FIXED_FILE, address(iov), 2, 8192, 0, 1));
        ring.submit();
        assertArrayEquals(new int[] {8192, 8192}, reapExactly(ring, 2));

        // READV into two separate buffers, READ into a third
        ByteBuffer a = direct(4096);
        ByteBuffer b = direct(8192);
        ByteBuffer c = direct(4096);
        ByteBuffer iov2 = direct(32).order(ByteOrder.nativeOrder());
        iov2.putLong(0, address(a)).putLong(8, 4096).putLong(16, address(b)).putLong(24, 8192);
        assertTrue(ring.prepReadv(fd, 0, address(iov2), 2, 0, 0, 0));
        assertTrue(ring.prepRead(0, IoUring.IOSQE_FIXED_FILE, address(c), 4096, 12288, 0, 1));
        ring.submit();
        assertArrayEquals(new int[] {12288, 4096}, reapExactly(ring, 2));
        assertEquals(out.slice(0, 4096), a);
        assertEquals(out.slice(4096, 8192), b);
        assertEquals(out.slice(12288, 4096), c);

        // READ_FIXED / WRITE_FIXED inside a registered buffer, at an offset into it
        ByteBuffer registered = direct(65536);
        ring.registerBuffers(new long[] {address(registered)}, new long[] {registered.capacity()});
        for (int i = 0; i < 4096; i++) {
            registered.put(8192 + i, (byte) (255 - i));
        }
        assertTrue(ring.prepWriteFixed(0, IoUring.IOSQE_FIXED_FILE, address(registered) + 8192, 4096, 4096, 0, 0, 0));
        ring.submit();
        assertArrayEquals(new int[] {4096}, reapExactly(ring, 1));
        assertTrue(ring.prepReadFixed(fd, 0, address(registered) + 32768, 8192, 0, 0, 0, 0));
        ring.submit();
        assertArrayEquals(new int[] {8192}, reapExactly(ring, 1));
        assertEquals(out.slice(0, 4096), registered.slice(32768, 4096));
        assertEquals(registered.slice(8192, 4096), registered.slice(32768 + 4096, 4096));
        ring.unregisterBuffers();
        ring.unregisterFiles();

        byte[] onDisk = Files.readAllBytes(dir.resolve("data"));
        assertEquals(16384, onDisk.length);
        assertEquals((byte) 255, onDisk[4096]);
        assertEquals(out.get(100), onDisk[100]);
    }

    @Test
    void fsyncAndPunchHole()
            throws IOException
    {
        Ring ring = ring(Ring.builder(4));
        byte[] content = new byte[3 * 4096];
        Arrays.fill(content, (byte) 0xab);
        Files.write(dir.resolve("holes"), content);
        int fd = openFile("holes");
        assertTrue(ring.prepFallocate(fd, 0, 0x01 | 0x02, 4096, 4096, 0)); // FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
        ring.submit();
        assertArrayEquals(new int[] {0}, reapExactly(ring, 1));
        assertTrue(ring.prepFsync(fd, 0, IoUring.FSYNC_DATASYNC, 0));
        ring.submit();
        assertArrayEquals(new int[] {0}, reapExactly(ring, 1));

        byte[] after = Files.readAllBytes(dir.resolve("holes"));
        assertEquals(content.length, after.length, "KEEP_SIZE keeps the size");
        assertEquals((byte) 0xab, after[4095]);
        assertEquals(0, after[4096]);
        assertEquals(0, after[8191]);
        assertEquals((byte) 0xab, after[8192]);
    }

    @Test
    void cancelOfABlockedRead()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(4));
        int eventFd = Posix.eventfd(0, Posix.EFD_CLOEXEC);
        assertTrue(eventFd >= 0, () -> "eventfd: " + Errors.name(eventFd));
        closeables.add(() -> Posix.close(eventFd));
        ByteBuffer buffer = direct(4096);
        assertTrue(ring.prepRead(eventFd, 0, address(buffer), 8, -1, 0, 0));
        assertEquals(1, ring.submit());
        assertEquals(0, ring.cqReady(), "an eventfd at zero keeps the read in flight");
        assertTrue(ring.prepAsyncCancel(0, 0, 1));
        ring.submit();
        int[] res = reapExactly(ring, 2);
        assertEquals(-Errors.ECANCELED, res[0]);
        assertEquals(0, res[1]);
    }

    /**
     * A multishot RECV into a ring of four 64-byte provided buffers: each chunk in its own buffer, named
     * by the CQE, while the receive stays armed; out of buffers it ends with ENOBUFS and the rest stays
     * in the socket, to be received in order once buffers are given back and it is armed again; the
     * end of input ends it too.
     */
    @Test
    void multishotReceiveIntoProvidedBuffers()
            throws NativeIoException
    {
        IoUringAssumptions.assumeMultishotReceive();
        Ring ring = ring(Ring.builder(4));
        int[] sockets = new int[2];
        assertEquals(0, Posix.socketpair(Posix.AF_UNIX, Posix.SOCK_STREAM | Posix.SOCK_CLOEXEC, sockets));
        closeables.add(() -> Posix.close(sockets[0]));
        closeables.add(() -> {
            if (sockets[1] >= 0) {
                Posix.close(sockets[1]);
            }
        });
        BufferRing buffers = BufferRing.register(ring, 7, 4);
        closeables.add(buffers);
        ByteBuffer memory = direct(4 * 64);
        for (int i = 0; i < 4; i++) {
            buffers.add(address(memory) + 64 * i, 64, i);
        }
        buffers.publish();

        byte[] sent = new byte[400];
        for (int i = 0; i < sent.length; i++) {
            sent[i] = (byte) (i * 7 + 1);
        }
        ByteBuffer out = direct(sent.length);
        out.put(0, sent);
        assertEquals(100, Posix.write(sockets[1], address(out), 100));
        assertTrue(ring.prepRecvMultishot(sockets[0], 0, 7, 0, 42));
        assertEquals(1, ring.submit());

        ByteBuffer received = ByteBuffer.allocate(sent.length);
        List<int[]> cqes = new ArrayList<>();
        CompletionHandler collect = (userData, res, flags) -> {
            assertEquals(42, userData);
            cqes.add(new int[] {res, flags});
            if ((flags & IoUring.CQE_F_BUFFER) != 0 && res > 0) {
                int bid = flags >>> IoUring.CQE_BUFFER_SHIFT;
                received.put(memory.duplicate().position(64 * bid).limit(64 * bid + res));
            }
        };
        while (received.position() < 100) {
            ring.waitCompletions(1);
            ring.reap(collect);
        }
        assertTrue(cqes.stream().allMatch(cqe -> (cqe[1] & IoUring.CQE_F_MORE) != 0), "the receive ended while buffers were left");
        assertEquals(64, cqes.get(0)[0], "a chunk larger than a buffer fills it");

        // 300 more: whatever buffers are left fill up, then ENOBUFS ends the receive; nothing is lost
        assertEquals(300, Posix.write(sockets[1], address(out) + 100, 300));
        while (cqes.isEmpty() || (cqes.get(cqes.size() - 1)[1] & IoUring.CQE_F_MORE) != 0) {
            ring.waitCompletions(1);
            ring.reap(collect);
        }
        assertEquals(-Errors.ENOBUFS, cqes.get(cqes.size() - 1)[0]);
        assertEquals(100 + 2 * 64, received.position(), "a chunk uses up its buffer, however short: two were left");

        // buffers back, armed again: the rest arrives after what came before
        for (int i = 0; i < 4; i++) {
            buffers.add(address(memory) + 64 * i, 64, i);
        }
        buffers.publish();
        cqes.clear();
        assertTrue(ring.prepRecvMultishot(sockets[0], 0, 7, 0, 42));
        ring.submit();
        while (received.position() < sent.length) {
            ring.waitCompletions(1);
            ring.reap(collect);
        }
        assertArrayEquals(sent, received.array());

        Posix.close(sockets[1]);
        sockets[1] = -1;
        while (cqes.isEmpty() || (cqes.get(cqes.size() - 1)[1] & IoUring.CQE_F_MORE) != 0) {
            ring.waitCompletions(1);
            ring.reap(collect);
        }
        assertEquals(0, cqes.get(cqes.size() - 1)[0], "end of input ends the receive");
    }

    @Test
    void bigSqesAndCqes()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(4).flags(IoUring.SETUP_SQE128 | IoUring.SETUP_CQE32));
        assertEquals(128, ring.sqeSize());
        assertEquals(32, ring.cqeSize());
        for (int round = 0; round < 5; round++) {
            for (int i = 0; i < 4; i++) {
                assertTrue(ring.prepNop(i));
            }
            ring.submit();
            assertArrayEquals(new int[4], reapExactly(ring, 4));
        }
    }

    @Test
    void submissionQueuePolling()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(8).flags(IoUring.SETUP_SQPOLL).sqThreadIdleMillis(1));
        for (int round = 0; round < 50; round++) {
            assertTrue(ring.prepNop(round % 4));
            assertTrue(ring.prepNop(4 + round % 4));
            ring.submit();
            int[] seen = {0};
            while (seen[0] < 2) {
                ring.submitAndWait(1);
                seen[0] += ring.reap((u, r, f) -> assertEquals(0, r));
            }
        }
    }

    @Test
    void errnoBecomesTypedException()
            throws NativeIoException
    {
        Ring ring = ring(Ring.builder(2));
        NativeIoException e = assertThrows(NativeIoException.class, () -> ring.registerFiles(12345));
        assertEquals(Errors.EBADF, e.errno());
        assertTrue(e.getMessage().contains("IORING_REGISTER_FILES") && e.getMessage().contains("EBADF"), e.getMessage());
    }
}
