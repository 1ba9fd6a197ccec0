package dev.jloop.dist;

import dev.jloop.dist.PipelinedNbdClient.Request;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static dev.jloop.dist.PipelinedNbdClient.CMD_CACHE;
import static dev.jloop.dist.PipelinedNbdClient.CMD_FLAG_FAST_ZERO;
import static dev.jloop.dist.PipelinedNbdClient.CMD_FLAG_FUA;
import static dev.jloop.dist.PipelinedNbdClient.CMD_FLAG_NO_HOLE;
import static dev.jloop.dist.PipelinedNbdClient.CMD_FLUSH;
import static dev.jloop.dist.PipelinedNbdClient.CMD_READ;
import static dev.jloop.dist.PipelinedNbdClient.CMD_TRIM;
import static dev.jloop.dist.PipelinedNbdClient.CMD_WRITE;
import static dev.jloop.dist.PipelinedNbdClient.CMD_WRITE_ZEROES;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_CACHE;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_FAST_ZERO;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_FLUSH;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_FUA;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_TRIM;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.dist.PipelinedNbdClient.NBD_ENOTSUP;

/**
 * A random workload of every NBD command and flag the export advertises, with a model of the disk that
 * checks every reply: the requests of each connection for {@link PipelinedNbdClient}, and the handler of
 * its replies.
 *
 * <p>Each connection works through the same shuffled list of blocks: one burst per command variant
 * (requests of only that variant, so that the server holds a deep queue of it) and blocks of random
 * variants. The connections start each block together, so that a burst is in flight on all of them at
 * once. What a request is and how long depends only on the seed, the connection and its index; where
 * it lands also on which regions are in flight, as no two requests in flight at once overlap
 * (overlapping requests in flight are unordered, so no model could check them).
 *
 * <p>The model is applied when a reply arrives: a WRITE's data, zeros for WRITE_ZEROES, and "unknown"
 * for TRIM (advisory: the old data or zeros, the spec lets a client assume nothing until it writes again),
 * for a FAST_ZERO answered ENOTSUP and for anything that failed. A READ is compared with the model's
 * known bytes when its reply arrives.
 */
final class NbdFlood
        implements PipelinedNbdClient.RequestSource, PipelinedNbdClient.ReplyHandler
{
    private static final int MAX_PROBLEMS = 30;
    private static final int EXAMPLES_PER_KIND = 3;
    private static final int MIX_BLOCK = 64;
    private static final int READ_BACK_CHUNK = 1 << 20;

    /** A command and its flags, and how often it is picked in the random blocks. */
    record Variant(int type, int flags, int weight)
    {
        boolean hasRegion()
        {
            return type != CMD_FLUSH;
        }

        @Override
        public String toString()
        {
            return PipelinedNbdClient.command(type, flags);
        }
    }

    private record Block(Variant variant, int count) {}

    /**
     * What each connection sends: a burst of {@code burst} requests per variant, {@code mixed} requests
     * of random variants, none longer than {@code largest} bytes; only variants that carry every one of
     * the command flags {@code flags}.
     */
    record Plan(int burst, int mixed, int largest, int flags) {}

    private final long seed;
    private final byte[] model;
    private final BitSet unknown = new BitSet();
    private final List<Variant> variants;
    private final int weights;
    private final List<Block> blocks;
    private final BitSet blockStarts = new BitSet();
    private final CyclicBarrier blockStart;
    private final Plan plan;
    private final int perConnection;
    private final int[] issued;
    private final AtomicLong handles = new AtomicLong();
    private final AtomicInteger answered = new AtomicInteger();
    private final Map<String, AtomicInteger> answeredByVariant = new ConcurrentSkipListMap<>();

    private final ReentrantLock regionLock = new ReentrantLock();
    private final Condition regionFreed = regionLock.newCondition();
    private final TreeMap<Long, Long> regions = new TreeMap<>();
    private int mostInFlight;
    private volatile boolean stopped;
    private volatile boolean shutdownExpected;
    private volatile long lastReplyNanos = System.nanoTime();

    private final List<String> problems = new ArrayList<>();
    private int problemCount;
    private final Map<String, Integer> problemsByKind = new TreeMap<>();

    /** A flood over a disk holding {@code contents}, taken as the model (not copied), on {@code connections} connections. */
    NbdFlood(long seed, byte[] contents, int transmissionFlags, int connections, Plan plan)
    {
        this.seed = seed;
        this.model = contents;
        this.plan = plan;
        this.variants = advertised(transmissionFlags).stream()
                .filter(variant -> (variant.flags() & plan.flags()) == plan.flags())
                .toList();
        this.weights = variants.stream().mapToInt(Variant::weight).sum();
        List<Block> list = new ArrayList<>();
        for (Variant variant : variants) {
            list.add(new Block(variant, plan.burst()));
        }
        for (int i = 0; i < (plan.mixed() + MIX_BLOCK - 1) / MIX_BLOCK; i++) {
            list.add(new Block(null, MIX_BLOCK));
        }
        Collections.shuffle(list, new Random(seed));
        this.blocks = List.copyOf(list);
        int position = 0;
        for (Block block : blocks) {
            blockStarts.set(position);
            position += block.count();
        }
        this.perConnection = position;
        this.issued = new int[connections];
        this.blockStart = new CyclicBarrier(connections);
    }

    /** Every variant the transmission flags allow: FUA on every command once SEND_FUA is advertised. */
    static List<Variant> advertised(int transmissionFlags)
    {
        List<Variant> variants = new ArrayList<>();
        List<Integer> fua = (transmissionFlags & FLAG_SEND_FUA) != 0 ? List.of(0, CMD_FLAG_FUA) : List.of(0);
        for (int f : fua) {
            variants.add(new Variant(CMD_READ, f, 6));
            variants.add(new Variant(CMD_WRITE, f, 6));
            if ((transmissionFlags & FLAG_SEND_FLUSH) != 0) {
                variants.add(new Variant(CMD_FLUSH, f, 1));
            }
            if ((transmissionFlags & FLAG_SEND_TRIM) != 0) {
                variants.add(new Variant(CMD_TRIM, f, 2));
            }
            if ((transmissionFlags & FLAG_SEND_WRITE_ZEROES) != 0) {
                variants.add(new Variant(CMD_WRITE_ZEROES, f, 2));
                variants.add(new Variant(CMD_WRITE_ZEROES, f | CMD_FLAG_NO_HOLE, 2));
                if ((transmissionFlags & FLAG_SEND_FAST_ZERO) != 0) {
                    variants.add(new Variant(CMD_WRITE_ZEROES, f | CMD_FLAG_FAST_ZERO, 1));
                    variants.add(new Variant(CMD_WRITE_ZEROES, f | CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE, 1));
                }
            }
            if ((transmissionFlags & FLAG_SEND_CACHE) != 0) {
                variants.add(new Variant(CMD_CACHE, f, 1));
            }
        }
        return List.copyOf(variants);
    }

    long seed()
    {
        return seed;
    }

    /** The variants sent. */
    List<Variant> variants()
    {
        return variants;
    }

    /** Requests each connection sends in the flood. */
    int perConnection()
    {
        return perConnection;
    }

    int answered()
    {
        return answered.get();
    }

    /** Replies per variant, e.g. {@code WRITE+FUA=1234}. */
    Map<String, Integer> answeredByVariant()
    {
        Map<String, Integer> counts = new TreeMap<>();
        answeredByVariant.forEach((name, count) -> counts.put(name, count.get()));
        return counts;
    }

    /** The most requests with a region that were unanswered at once, over all connections. */
    int mostInFlight()
    {
        regionLock.lock();
        try {
            return mostInFlight;
        }
        finally {
            regionLock.unlock();
        }
    }

    long millisSinceLastReply()
    {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - lastReplyNanos);
    }

    /** Ends the flood: writers get no more requests. */
    void stop()
    {
        stopped = true;
        blockStart.reset();
        regionLock.lock();
        try {
            regionFreed.signalAll();
        }
        finally {
            regionLock.unlock();
        }
    }

    /** From now on errors and closed connections are expected (the server was told to stop); failed requests leave unknown data. */
    void expectShutdown()
    {
        shutdownExpected = true;
    }

    @Override
    public Request next(PipelinedNbdClient client)
            throws InterruptedException
    {
        int connection = client.id();
        if (stopped || issued[connection] == perConnection) {
            return null;
        }
        int index = issued[connection]++;
        if (blockStarts.get(index) && !startTogether()) {
            return null;
        }
        SplittableRandom random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + ((long) connection << 32) + index);
        Variant variant = variantAt(index, random);
        long handle = handles.incrementAndGet();
        if (!variant.hasRegion()) {
            return new Request(handle, variant.type(), variant.flags(), 0, 0, null);
        }
        int length = length(random);
        if (length > plan.largest()) {
            length = 1 + random.nextInt(plan.largest());
        }
        long offset = reserve(random, length);
        if (offset < 0) {
            return null;
        }
        byte[] payload = null;
        if (variant.type() == CMD_WRITE) {
            payload = new byte[length];
            random.nextBytes(payload);
        }
        return new Request(handle, variant.type(), variant.flags(), offset, length, payload);
    }

    /**
     * Waits until every connection has come to the same block, so that a burst is in flight on all of
     * them at once; false once the flood was stopped.
     */
    private boolean startTogether()
            throws InterruptedException
    {
        try {
            blockStart.await();
            return !stopped;
        }
        catch (BrokenBarrierException e) {
            return false;
        }
    }

    /** A source that reads the whole disk in 1 MiB requests, chunk i on connection i mod {@code connections}. */
    PipelinedNbdClient.RequestSource readBack(int connections)
    {
        int[] next = new int[connections];
        return client -> {
            long offset = ((long) next[client.id()]++ * connections + client.id()) * READ_BACK_CHUNK;
            if (offset >= model.length) {
                return null;
            }
            int length = (int) Math.min(READ_BACK_CHUNK, model.length - offset);
            regionLock.lock();
            try {
                regions.put(offset, offset + length);
            }
            finally {
                regionLock.unlock();
            }
            return new Request(handles.incrementAndGet(), CMD_READ, 0, offset, length, null);
        };
    }

    @Override
    public void reply(PipelinedNbdClient client, Request request, int error, byte[] data)
    {
        lastReplyNanos = System.nanoTime();
        answered.incrementAndGet();
        String variant = PipelinedNbdClient.command(request.type(), request.flags());
        answeredByVariant.computeIfAbsent(variant, name -> new AtomicInteger()).incrementAndGet();
        try {
            synchronized (model) {
                apply(client, request, error, data);
            }
        }
        finally {
            if (request.length() > 0) {
                release(request.offset());
            }
        }
    }

    private void apply(PipelinedNbdClient client, Request request, int error, byte[] data)
    {
        int from = (int) request.offset();
        int to = from + request.length();
        if (error != 0) {
            boolean allowed = (request.flags() & CMD_FLAG_FAST_ZERO) != 0 && error == NBD_ENOTSUP;
            if (!allowed && !shutdownExpected) {
                problem(PipelinedNbdClient.command(request.type(), request.flags()) + " answered with error " + errorName(error),
                        "connection " + client.id() + ": " + request + " answered with error " + errorName(error));
            }
            if (request.type() != CMD_READ && request.type() != CMD_CACHE) {
                unknown.set(from, to);
            }
            return;
        }
        switch (request.type()) {
            case CMD_READ -> check(client, request, data);
            case CMD_WRITE -> {
                System.arraycopy(request.payload(), 0, model, from, request.length());
                unknown.clear(from, to);
            }
            case CMD_WRITE_ZEROES -> {
                Arrays.fill(model, from, to, (byte) 0);
                unknown.clear(from, to);
            }
            case CMD_TRIM -> unknown.set(from, to);
            default -> {
                // FLUSH and CACHE leave the data as it is
            }
        }
    }

    private void check(PipelinedNbdClient client, Request request, byte[] data)
    {
        int mismatch = mismatch(request.offset(), data, 0, data.length);
        if (mismatch >= 0) {
            long at = request.offset() + mismatch;
            problem("READ data differs from the model",
                    String.format("connection %d: %s read 0x%02x at offset %d, the model has 0x%02x (%d bytes differ)",
                            client.id(), request, data[mismatch], at, model[(int) at], differing(request.offset(), data)));
        }
    }

    /** Compares {@code data} with the model from {@code offset} on: the index of the first known byte that differs, or -1. */
    int mismatch(long offset, byte[] data, int dataFrom, int length)
    {
        synchronized (model) {
            int start = (int) offset;
            int end = start + length;
            int position = start;
            while (position < end) {
                int unknownFrom = unknown.nextSetBit(position);
                int knownEnd = unknownFrom < 0 || unknownFrom > end ? end : unknownFrom;
                int m = Arrays.mismatch(model, position, knownEnd, data, dataFrom + position - start, dataFrom + knownEnd - start);
                if (m >= 0) {
                    return position - start + m;
                }
                if (knownEnd == end) {
                    return -1;
                }
                int known = unknown.nextClearBit(knownEnd);
                position = Math.min(known, end);
            }
            return -1;
        }
    }

    private int differing(long offset, byte[] data)
    {
        int count = 0;
        for (int i = 0; i < data.length; i++) {
            if (data[i] != model[(int) offset + i] && !unknown.get((int) offset + i)) {
                count++;
            }
        }
        return count;
    }

    /** Marks the regions of requests that were never answered unknown: they may or may not have reached the disk. */
    void forget(List<Request> unanswered)
    {
        synchronized (model) {
            for (Request request : unanswered) {
                if (request.type() != CMD_READ && request.type() != CMD_CACHE && request.length() > 0) {
                    unknown.set((int) request.offset(), (int) request.offset() + request.length());
                }
            }
        }
    }

    /** Bytes the model knows, of the disk's. */
    long knownBytes()
    {
        synchronized (model) {
            return model.length - unknown.cardinality();
        }
    }

    void problem(String kind, String message)
    {
        synchronized (problems) {
            problemCount++;
            int ofKind = problemsByKind.merge(kind, 1, Integer::sum);
            if (ofKind <= EXAMPLES_PER_KIND && problems.size() < MAX_PROBLEMS) {
                problems.add(message);
            }
        }
    }

    boolean hasProblems()
    {
        synchronized (problems) {
            return problemCount > 0;
        }
    }

    /** The problems seen, counted by kind, and the first of them in full; empty if there were none. */
    String problems()
    {
        synchronized (problems) {
            if (problemCount == 0) {
                return "";
            }
            StringBuilder text = new StringBuilder();
            text.append(problemCount).append(" problems (seed ").append(seed).append("):");
            problemsByKind.forEach((kind, count) -> text.append("\n  ").append(count).append(" x ").append(kind));
            text.append("\nexamples:");
            problems.forEach(problem -> text.append("\n  ").append(problem));
            return text.toString();
        }
    }

    private Variant variantAt(int index, SplittableRandom random)
    {
        int position = index;
        for (Block block : blocks) {
            if (position < block.count()) {
                return block.variant() != null ? block.variant() : randomVariant(random);
            }
            position -= block.count();
        }
        throw new IllegalStateException("request " + index + " beyond the plan");
    }

    private Variant randomVariant(SplittableRandom random)
    {
        int pick = random.nextInt(weights);
        for (Variant variant : variants) {
            pick -= variant.weight();
            if (pick < 0) {
                return variant;
            }
        }
        throw new IllegalStateException();
    }

    /** Mostly small, some sector or byte aligned only, a few up to 1 MiB. */
    private static int length(SplittableRandom random)
    {
        int kind = random.nextInt(100);
        if (kind < 50) {
            return 4096 * (1 + random.nextInt(16));
        }
        if (kind < 70) {
            return 512 * (1 + random.nextInt(32));
        }
        if (kind < 98) {
            return 1 + random.nextInt(20_000);
        }
        return 65536 * (2 + random.nextInt(15));
    }

    /** A free region of {@code length} bytes, aligned as its length is, reserved until its reply; -1 once stopped. */
    private long reserve(SplittableRandom random, int length)
            throws InterruptedException
    {
        int alignment = length % 4096 == 0 ? 4096 : length % 512 == 0 ? 512 : 1;
        long slots = (model.length - length) / alignment + 1;
        regionLock.lock();
        try {
            while (!stopped) {
                for (int attempt = 0; attempt < 32; attempt++) {
                    long offset = random.nextLong(slots) * alignment;
                    if (isFree(offset, offset + length)) {
                        regions.put(offset, offset + length);
                        mostInFlight = Math.max(mostInFlight, regions.size());
                        return offset;
                    }
                }
                regionFreed.await(10, TimeUnit.MILLISECONDS);
            }
            return -1;
        }
        finally {
            regionLock.unlock();
        }
    }

    private boolean isFree(long from, long to)
    {
        Map.Entry<Long, Long> before = regions.floorEntry(from);
        if (before != null && before.getValue() > from) {
            return false;
        }
        Long after = regions.ceilingKey(from);
        return after == null || after >= to;
    }

    private void release(long offset)
    {
        regionLock.lock();
        try {
            regions.remove(offset);
            regionFreed.signalAll();
        }
        finally {
            regionLock.unlock();
        }
    }

    static String errorName(int error)
    {
        return switch (error) {
            case 1 -> "EPERM";
            case 5 -> "EIO";
            case 12 -> "ENOMEM";
            case 22 -> "EINVAL";
            case 28 -> "ENOSPC";
            case 75 -> "EOVERFLOW";
            case 95 -> "ENOTSUP";
            case 108 -> "ESHUTDOWN";
            default -> "error " + error;
        } + " (" + error + ")";
    }
}
