package dev.jloop.nbd;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Bio;
import dev.jloop.api.BlockDevice;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Kiocb;
import dev.jloop.backend.nio.NioBackendFactory;
import dev.jloop.backend.sync.SyncBackendFactory;
import dev.jloop.loop.LoopDevice;
import dev.jloop.nbd.CrashHistory.Kind;
import dev.jloop.nbd.CrashHistory.Request;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import dev.jloop.testkit.VolatileCacheBackingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;

import static dev.jloop.nbd.CrashHistory.SECTOR;
import static dev.jloop.nbd.NbdProtocol.CMD_DISC;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_FUA;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLUSH;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.CMD_TRIM;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE;
import static dev.jloop.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_CAN_MULTI_CONN;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR_OFFSET;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Crash consistency of the NBD server over a {@link LoopDevice}, proven in process with many power
 * cuts: the device's file is a {@link VolatileCacheBackingFile}, a disk with a volatile write cache.
 *
 * <p>Each round, two to four connections send pipelined batches of WRITE (some with FUA),
 * WRITE_ZEROES (FUA, NO_HOLE), TRIM (FUA), FLUSH and READ at random sectors of a small export, half
 * of them in a hot region so that requests overlap; half of the connections take READs as
 * structured replies, and long ones then skip holes found from extents. Once a random number of
 * requests has been sent the power is cut, with requests in flight; the clients then stop, take the
 * replies still due and disconnect, the power comes back, and the whole export is read back over
 * NBD, in simple and sparse structured reads by turns.
 * {@link CrashHistory} checks what the reads during the round returned and what survived (its
 * class comment has the rules). The next round starts from what survived, on the same server.
 *
 * <p>A failure names the round and its seed. The seed fixes what each client sends and how the cut
 * chooses; thread timing is not replayed. {@code -Djloop.crash.seed=N} sets the first seed,
 * {@code -Djloop.crash.rounds=N} the rounds of every run but the self-checks.
 *
 * <p>The self-checks at the end prove the checker is not blind: a disk that forgets FUA or flushes,
 * and a device that drops FUA from zeroing, must be caught.
 */
class TestNbdCrashConsistency
        extends AbstractNbdServerTest
{
    private static final int SECTORS = 512;
    private static final long SIZE = (long) SECTORS * SECTOR;
    /** Where half of the requests go, so that they overlap. */
    private static final int HOT_SECTORS = 64;
    private static final int MAX_BATCH = 8;
    private static final long TIMEOUT_SECONDS = 60;
    private static final long SEED = Long.decode(System.getProperty("jloop.crash.seed", "0x6a6c6f6f70"));
    private static final int ROUNDS = Integer.getInteger("jloop.crash.rounds", 0);

    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final AtomicLong ids = new AtomicLong();
    private final AtomicInteger clientThreads = new AtomicInteger();
    private final ExecutorService clients = Executors.newCachedThreadPool(runnable -> {
        Thread thread = new Thread(runnable, "crash-client-" + clientThreads.incrementAndGet());
        thread.setDaemon(true);
        return thread;
    });
    private String testName;
    private VolatileCacheBackingFile volatileCache;
    private LoopDevice device;

    @BeforeEach
    void rememberName(TestInfo info)
    {
        testName = info.getTestMethod().orElseThrow().getName();
    }

    @AfterEach
    void closeDevice()
            throws IOException
    {
        clients.shutdownNow();
        if (volatileCache != null && !volatileCache.poweredOn()) {
            volatileCache.powerOn();
        }
        if (server != null) {
            server.close();
        }
        if (device != null) {
            device.close();
        }
    }

    @Test
    void memoryFileWithNativeFua()
            throws Exception
    {
        assertConsistent(run(MemoryBackingFile.builder(SIZE).build(), builder -> builder.nativeFua(true), UnaryOperator.identity(), SEED, 800, false));
    }

    @Test
    void queuedMemoryFileWithFuaByFlush()
            throws Exception
    {
        assertConsistent(run(MemoryBackingFile.builder(SIZE).queued(2).build(), builder -> builder.nativeFua(false), UnaryOperator.identity(), SEED + 1, 800, false));
    }

    /** The nio backend on a real file: completions on its worker threads; FUA as IOCB_DSYNC writes. */
    @Test
    void nioFile()
            throws Exception
    {
        BackingFile file = new NioBackendFactory().open(new BackendConfig(file("nio"), false, false, 64, Map.of()));
        assertConsistent(run(file, builder -> builder.nativeFua(true), UnaryOperator.identity(), SEED + 2, 300, false));
    }

    /** The sync backend on a real file: the loop device's single worker; FUA as write and fdatasync. */
    @Test
    void syncFile()
            throws Exception
    {
        BackingFile file = new SyncBackendFactory().open(new BackendConfig(file("sync"), false, false, 64, Map.of()));
        assertConsistent(run(file, builder -> builder.nativeFua(false).sectorSize(4096), UnaryOperator.identity(), SEED + 3, 300, false));
    }

    /**
     * A file system that cannot fallocate, found out only when asked: zeroing falls back to writing
     * zeros (then an fdatasync for FUA), and trimming does nothing.
     */
    @Test
    void memoryFileWithoutFallocate()
            throws Exception
    {
        BackingFile file = new FallocateUnsupported(MemoryBackingFile.builder(SIZE).queued(2).build());
        assertConsistent(run(file, builder -> builder.nativeFua(true), UnaryOperator.identity(), SEED + 7, 300, false));
    }

    @Test
    void checkerCatchesDiskThatForgetsFua()
            throws Exception
    {
        Outcome outcome = run(MemoryBackingFile.builder(SIZE).build(), builder -> builder.nativeFua(true).ignoreFua(true), UnaryOperator.identity(), SEED + 4, 300, true);
        assertCaught(outcome, "WRITE+FUA", "(durable by FUA)");
    }

    @Test
    void checkerCatchesDiskThatForgetsFlushes()
            throws Exception
    {
        Outcome outcome = run(MemoryBackingFile.builder(SIZE).queued(2).build(), builder -> builder.ignoreFlush(true), UnaryOperator.identity(), SEED + 5, 300, true);
        // The device emulates FUA with the fdatasync this disk ignores as well: whichever loss the
        // thread timing shows first, a flush's or a FUA's, is this disk's fault.
        assertCaught(outcome, "", "(durable by FLUSH #", "(durable by FUA)");
    }

    /** A loop device that does not make a FUA zeroing durable (no fdatasync after it). */
    @Test
    void checkerCatchesDeviceThatDropsFuaFromZeroing()
            throws Exception
    {
        Outcome outcome = run(MemoryBackingFile.builder(SIZE).build(), builder -> builder.nativeFua(true), FuaDroppingDevice::new, SEED + 6, 300, true);
        assertCaught(outcome, "WRITE_ZEROES+FUA", "(durable by FUA)");
    }

    private static void assertConsistent(Outcome outcome)
    {
        if (!outcome.failures.isEmpty()) {
            fail(String.join("\n", outcome.failures));
        }
        // The check must have had something to check: cuts that lost data, sectors that durability pinned, reads.
        assertTrue(outcome.lostSectors > 0, "no cut lost anything: " + outcome);
        assertTrue(outcome.constrained > 0, "durability never ruled anything out: " + outcome);
        assertTrue(outcome.readSectors > 0, "no read checked: " + outcome);
    }

    /** The run stopped at a round whose violations name a request of {@code kind}, durable for {@code reason}, as lost. */
    private static void assertCaught(Outcome outcome, String kind, String... reasons)
    {
        assertEquals(1, outcome.failures.size(), "a broken device must be caught within " + outcome.rounds + " rounds: " + outcome);
        String failure = outcome.failures.get(0);
        assertTrue(failure.lines()
                        .filter(line -> line.contains("after the power cut"))
                        .flatMap(line -> Arrays.stream(line.split("; ")))
                        .anyMatch(clause -> clause.contains("replaced by durable #") && clause.contains(kind) && Arrays.stream(reasons).anyMatch(clause::contains)),
                "the violation names the lost request and why it was durable (" + String.join(" or ", reasons) + "): " + failure);
    }

    private Path file(String name)
            throws IOException
    {
        Path path = dir.resolve(name);
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            channel.write(ByteBuffer.allocate(1), SIZE - 1);
        }
        return path;
    }

    /**
     * Serves {@code file} behind the volatile cache and a loop device, and runs rounds from
     * {@code seed}; with {@code untilCaught} it stops at the first round with violations.
     */
    private Outcome run(BackingFile file, UnaryOperator<VolatileCacheBackingFile.Builder> cache, UnaryOperator<BlockDevice> wrapper, long seed, int rounds, boolean untilCaught)
            throws Exception
    {
        volatileCache = cache.apply(VolatileCacheBackingFile.builder(file)).build();
        device = new LoopDevice(volatileCache, new AioKernel(), "crash");
        startServer(Map.of(), List.of(new Export("disk", "", wrapper.apply(device))));
        Outcome outcome = new Outcome();
        long[] content = readBack(false);
        int total = ROUNDS > 0 && !untilCaught ? ROUNDS : rounds;
        for (int round = 0; round < total && outcome.failures.isEmpty(); round++) {
            long roundSeed = seed + round * 0x9E3779B97F4A7C15L;
            CrashHistory history = new CrashHistory(content);
            long cutAt = round(history, roundSeed, outcome);
            content = readBack(round % 2 == 1);
            CrashHistory.Findings findings = history.check(cutAt, content);
            outcome.add(findings);
            if (!findings.violations.isEmpty()) {
                outcome.failures.add(String.format("round %d of %d, seed 0x%x, %d violations (the rounds again, with other thread timing: "
                                + "-Dtest=%s#%s -Djloop.crash.seed=0x%x -Djloop.crash.rounds=%d):%n  %s",
                        round, total, roundSeed, findings.violations.size(), getClass().getSimpleName(), testName, SEED, round + 1,
                        String.join("\n  ", findings.violations.subList(0, Math.min(5, findings.violations.size())))));
            }
            outcome.rounds++;
            if (!untilCaught && !outcome.failures.isEmpty()) {
                break;
            }
        }
        assertEquals(0, device.inFlight(), "bios left in flight");
        return outcome;
    }

    /** One round: clients, a cut once {@code cutAfter} requests were sent, the replies still due. Returns the clock at the cut. */
    private long round(CrashHistory history, long seed, Outcome outcome)
            throws Exception
    {
        Random random = new Random(seed);
        int connections = 2 + random.nextInt(3);
        int[] requests = new int[connections];
        int total = 0;
        for (int i = 0; i < connections; i++) {
            requests[i] = 8 + random.nextInt(40);
            total += requests[i];
        }
        int cutAfter = 1 + random.nextInt(total);
        AtomicInteger sent = new AtomicInteger();
        CountDownLatch cut = new CountDownLatch(1);
        AtomicBoolean stop = new AtomicBoolean();
        List<Future<?>> futures = new ArrayList<>();
        for (int i = 0; i < connections; i++) {
            Client client = new Client(i, new Random(seed + 1 + i), history, requests[i], () -> {
                if (sent.incrementAndGet() == cutAfter) {
                    cut.countDown();
                }
            }, stop);
            futures.add(clients.submit(client::run));
        }
        while (!cut.await(1, TimeUnit.MILLISECONDS) && !futures.stream().allMatch(Future::isDone)) {
            Thread.onSpinWait();
        }
        long cutAt = history.tick();
        outcome.lostSectors += volatileCache.powerCut(random);
        stop.set(true);
        for (Future<?> future : futures) {
            try {
                future.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            }
            catch (ExecutionException | TimeoutException e) {
                throw new AssertionError(String.format("client failed in the round of seed 0x%x", seed), e);
            }
        }
        volatileCache.powerOn();
        return cutAt;
    }

    /** The value of every sector, read over a connection of its own: simple replies, or a sparse structured read. */
    private long[] readBack(boolean structured)
            throws IOException
    {
        try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
            byte[] data;
            if (structured) {
                client.sendRequest(0, CMD_READ, 1, 0, SIZE);
                data = NbdTestClient.assemble(client.readChunks(), 0, (int) SIZE);
            }
            else {
                data = client.read(0, (int) SIZE);
            }
            long[] values = new long[SECTORS];
            for (int sector = 0; sector < SECTORS; sector++) {
                values[sector] = CrashHistory.decode(data, sector * SECTOR, sector);
            }
            client.sendRequest(0, CMD_DISC, 0, 0, 0);
            return values;
        }
    }

    /** One connection's part of a round: batches of requests sent together, then their replies. */
    private final class Client
    {
        private final int connection;
        private final Random random;
        private final CrashHistory history;
        private final int requests;
        private final Runnable onSent;
        private final AtomicBoolean stop;

        Client(int connection, Random random, CrashHistory history, int requests, Runnable onSent, AtomicBoolean stop)
        {
            this.connection = connection;
            this.random = random;
            this.history = history;
            this.requests = requests;
            this.onSent = onSent;
            this.stop = stop;
        }

        Void run()
                throws IOException
        {
            // Half of the connections take READs as structured replies: sparse reads planned from extents.
            boolean structured = random.nextBoolean();
            try (NbdTestClient client = structured ? NbdTestClient.openStructured(address(), "disk") : NbdTestClient.open(address(), "disk")) {
                int needed = FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_CAN_MULTI_CONN;
                assertEquals(needed, client.transmissionFlags & needed, "the export must offer what the workload sends");
                Map<Long, Request> pending = new HashMap<>();
                int left = requests;
                while (left > 0 && !stop.get()) {
                    int batch = Math.min(left, 1 + random.nextInt(MAX_BATCH));
                    for (int i = 0; i < batch; i++) {
                        send(client, pending);
                    }
                    for (int i = 0; i < batch; i++) {
                        receive(client, pending);
                    }
                    left -= batch;
                }
                client.sendRequest(0, CMD_DISC, 0, 0, 0);
            }
            return null;
        }

        private void send(NbdTestClient client, Map<Long, Request> pending)
                throws IOException
        {
            int kind = random.nextInt(100);
            int sectors;
            if (kind >= 77 && random.nextInt(3) == 0) {
                // long enough that a structured read asks for extents and skips holes
                sectors = StructuredRead.HOLE_MIN / SECTOR + random.nextInt(3 * StructuredRead.HOLE_MIN / SECTOR);
            }
            else {
                sectors = random.nextInt(4) == 0 ? 1 + random.nextInt(64) : 1 + random.nextInt(8);
            }
            int firstSector = random.nextBoolean()
                    ? random.nextInt(Math.max(1, HOT_SECTORS - sectors + 1))
                    : random.nextInt(SECTORS - sectors + 1);
            boolean fua = random.nextInt(3) == 0;
            long id = ids.incrementAndGet();
            Request request;
            int flags = fua ? CMD_FLAG_FUA : 0;
            int type;
            byte[] payload = null;
            if (kind < 40) {
                request = new Request(Kind.WRITE, id, connection, fua, firstSector, sectors);
                type = CMD_WRITE;
                payload = CrashHistory.pattern(id, firstSector, sectors);
            }
            else if (kind < 52) {
                request = new Request(Kind.WRITE_ZEROES, id, connection, fua, firstSector, sectors);
                type = CMD_WRITE_ZEROES;
                flags |= random.nextBoolean() ? CMD_FLAG_NO_HOLE : 0;
            }
            else if (kind < 62) {
                request = new Request(Kind.TRIM, id, connection, fua, firstSector, sectors);
                type = CMD_TRIM;
            }
            else if (kind < 77) {
                // FUA on FLUSH and READ means nothing; not sent.
                request = new Request(Kind.FLUSH, id, connection, false, 0, 0);
                type = CMD_FLUSH;
                flags = 0;
            }
            else {
                request = new Request(Kind.READ, id, connection, false, firstSector, sectors);
                type = CMD_READ;
                flags = 0;
            }
            pending.put(id, request);
            history.sent(request);
            client.sendRequest(flags, type, id, (long) request.firstSector * SECTOR, (long) request.sectors * SECTOR, payload);
            onSent.run();
        }

        private void receive(NbdTestClient client, Map<Long, Request> pending)
                throws IOException
        {
            if (client.nextReplyIsStructured()) {
                List<NbdTestClient.Chunk> chunks = client.readChunks();
                Request request = pending.remove(chunks.get(0).cookie());
                if (request == null || request.kind != Kind.READ) {
                    throw new IOException("structured reply to cookie " + chunks.get(0).cookie() + ": " + request);
                }
                int error = 0;
                for (NbdTestClient.Chunk chunk : chunks) {
                    if (chunk.type() == REPLY_TYPE_ERROR || chunk.type() == REPLY_TYPE_ERROR_OFFSET) {
                        error = chunk.buffer().getInt();
                    }
                }
                if (error == 0) {
                    read(request, NbdTestClient.assemble(chunks, (long) request.firstSector * SECTOR, request.sectors * SECTOR));
                }
                history.answered(request, error);
                return;
            }
            NbdTestClient.Reply reply = client.readReply();
            Request request = pending.remove(reply.cookie());
            if (request == null) {
                throw new IOException("reply to unknown cookie " + reply.cookie());
            }
            if (request.kind == Kind.READ && reply.error() == 0) {
                read(request, client.readData(request.sectors * SECTOR));
            }
            history.answered(request, reply.error());
        }

        private void read(Request request, byte[] data)
        {
            request.read = new long[request.sectors];
            for (int i = 0; i < request.sectors; i++) {
                request.read[i] = CrashHistory.decode(data, i * SECTOR, request.firstSector + i);
                if (request.read[i] == CrashHistory.GARBAGE) {
                    request.data = data;
                }
            }
        }
    }

    /** What a run found. */
    private static final class Outcome
    {
        final List<String> failures = new ArrayList<>();
        int rounds;
        long lostSectors;
        long sectors;
        long constrained;
        long determined;
        long readSectors;

        void add(CrashHistory.Findings findings)
        {
            sectors += findings.sectors;
            constrained += findings.constrained;
            determined += findings.determined;
            readSectors += findings.readSectors;
        }

        @Override
        public String toString()
        {
            return rounds + " rounds, " + lostSectors + " sectors lost by cuts, " + sectors + " sectors checked after cuts ("
                    + constrained + " constrained by durability, " + determined + " with one content allowed), "
                    + readSectors + " sectors of reads checked, " + failures.size() + " failed rounds";
        }
    }

    /** Refuses fallocate with EOPNOTSUPP while declaring trim and zero, as a file system without them. */
    private static final class FallocateUnsupported
            extends ForwardingBackingFile
    {
        FallocateUnsupported(BackingFile file)
        {
            super(file);
        }

        @Override
        public long fallocate(Kiocb kiocb)
        {
            return -Errno.EOPNOTSUPP;
        }
    }

    /** A device that loses the FUA of WRITE_ZEROES on the way to the loop device, so no fdatasync follows it. */
    private static final class FuaDroppingDevice
            implements BlockDevice
    {
        private final BlockDevice device;

        FuaDroppingDevice(BlockDevice device)
        {
            this.device = device;
        }

        @Override
        public void submit(Bio bio)
        {
            if (bio.op() == Bio.Op.WRITE_ZEROES && bio.fua()) {
                bio.init(bio.op(), bio.offset(), bio.length(), bio.flags() & ~Bio.REQ_FUA, bio.iter());
            }
            device.submit(bio);
        }

        @Override
        public long size()
        {
            return device.size();
        }

        @Override
        public DeviceCapabilities capabilities()
        {
            return device.capabilities();
        }

        @Override
        public long extents(long offset, long length, ExtentSink sink)
        {
            return device.extents(offset, length, sink);
        }

        @Override
        public void plug()
        {
            device.plug();
        }

        @Override
        public void unplug()
        {
            device.unplug();
        }

        @Override
        public void close()
                throws IOException
        {
            device.close();
        }
    }
}
