package dev.jloop.dist;

import dev.jloop.dist.PipelinedNbdClient.Request;
import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static dev.jloop.dist.PipelinedNbdClient.CMD_FLAG_FUA;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_CAN_MULTI_CONN;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_FLUSH;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_FUA;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_TRIM;
import static dev.jloop.dist.PipelinedNbdClient.FLAG_SEND_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Deep pipelined queues through the assembled {@code bin/jloop serve}, with every backend, buffered and
 * with {@code --direct}, on one connection and on four (multi-conn): thousands of requests of every
 * command and flag the export advertises (READ, WRITE, FLUSH, TRIM, WRITE_ZEROES plain, NO_HOLE and
 * FAST_ZERO, CACHE, each with and without FUA), hundreds unanswered at a time on each connection, sizes
 * from one byte to 1 MiB at any alignment. {@link NbdFlood} checks every reply and the data read against
 * a model of the disk; at the end the whole export is read back over every connection and the file is
 * compared too, after jloop stopped on SIGTERM. Twenty connections hold more requests than the sync
 * backend's queue takes. And SIGTERM in the middle of a flood of FUA requests: jloop exits 0 at once,
 * with every write it answered in the file.
 *
 * <p>Each run has a deadline: a server that stops answering fails it with the requests that were never
 * answered, counted by command, the seed, and the server's threads (saved under
 * {@code target/stress-dumps}). {@code -Djloop.stress.seed=N} changes the seeds.
 */
class NbdStressIT
        extends AbstractJloopIT
{
    private static final int DISK_SIZE = 64 << 20;
    /** Requests in flight per connection: more than jloop's own bound (256), so that it is reached too. */
    private static final int WINDOW = 512;
    /** Requests of a single command variant in a row, over all connections together. */
    private static final int DEPTH = 256;
    /** Requests of random variants, over all connections together, besides the bursts. */
    private static final int MIXED = 256;
    /** More connections than the sync backend's queue (4096 requests) has room for with 256 in flight on each. */
    private static final int MANY_CONNECTIONS = 20;
    private static final Duration DEADLINE = Duration.ofSeconds(60);
    private static final Duration SIGTERM_TIMEOUT = Duration.ofSeconds(10);
    private static final int REQUIRED_FLAGS = FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_CAN_MULTI_CONN;
    private static final Path DUMPS = Path.of("target", "stress-dumps");

    private String testName;
    private JloopProcess server;
    private final List<PipelinedNbdClient> clients = new ArrayList<>();
    private volatile NbdFlood flood;

    @BeforeEach
    void setUp(TestInfo info)
    {
        testName = (info.getTestMethod().map(method -> method.getName() + "-").orElse("") + info.getDisplayName())
                .replaceAll("[^A-Za-z0-9_]+", "-");
    }

    @AfterEach
    void tearDown()
            throws Exception
    {
        if (flood != null) {
            flood.stop();
        }
        closeClients();
        if (server != null) {
            try {
                server.stop(Duration.ofSeconds(5));
            }
            catch (IllegalStateException e) {
                // killed: the test has failed already, with the reason
            }
        }
    }

    static Stream<Arguments> floods()
    {
        List<Arguments> cases = new ArrayList<>();
        for (String backend : List.of("sync", "nio", "io_uring")) {
            for (String cache : List.of("buffered", "direct")) {
                for (int connections : List.of(1, 4)) {
                    cases.add(Arguments.of(backend, cache, connections));
                }
            }
        }
        return cases.stream();
    }

    /** Each backend once, buffered or with {@code --direct} (the floods run every pairing). */
    static Stream<Arguments> backends()
    {
        return Stream.of(Arguments.of("sync", "buffered"), Arguments.of("nio", "direct"), Arguments.of("io_uring", "buffered"));
    }

    @ParameterizedTest(name = "{0}, {1}, {2} connection(s)")
    @MethodSource("floods")
    void everyCommandAndFlagDeepQueued(String backend, String cache, int connections)
            throws Exception
    {
        // one connection also gets requests of up to 1 MiB; with four, smaller ones leave room for more in flight
        flood(backend, cache, connections, new NbdFlood.Plan(DEPTH / connections, MIXED / connections, connections == 1 ? 1 << 20 : 32 << 10, 0));
    }

    /**
     * Twenty connections with 256 requests in flight on each: more than the sync backend's queue holds, so
     * submitting requests has to wait for room while completions go on.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"sync", "nio", "io_uring"})
    void deepQueuesOnTwentyConnections(String backend)
            throws Exception
    {
        flood(backend, "buffered", MANY_CONNECTIONS, new NbdFlood.Plan(16, 64, 4096, 0));
    }

    private void flood(String backend, String cache, int connections, NbdFlood.Plan plan)
            throws Exception
    {
        long seed = seed(backend + cache + connections);
        byte[] contents = randomContents(seed);
        Path image = dir.resolve("disk.img");
        Files.write(image, contents);
        server = serve(backend, cache, image);
        long start = System.nanoTime();

        assertTimeoutPreemptively(DEADLINE, () -> {
            int flags = connect(connections);
            flood = new NbdFlood(seed, contents, flags, connections, plan);
            await("the flood", sendAll(clients, flood));
            await("reading the export back", sendAll(clients, flood.readBack(connections)));
            for (PipelinedNbdClient client : clients) {
                client.disconnect();
            }
        }, () -> hangReport("jloop did not answer every request within " + DEADLINE.toSeconds() + " s"));
        System.out.printf("%s: %d requests in %d ms, at most %d in flight, seed %d%n", testName, flood.answered(),
                (System.nanoTime() - start) / 1_000_000, flood.mostInFlight(), seed);

        assertEquals(0, stopServer(), server.log());
        assertEquals(List.of(), closeClients(), "connections that failed");
        assertFalse(flood.hasProblems(), flood::problems);
        int mismatch = flood.mismatch(0, Files.readAllBytes(image), 0, DISK_SIZE);
        assertEquals(-1, mismatch, () -> "the file differs from the model at offset " + mismatch + " (seed " + seed + ")");

        int readBack = DISK_SIZE / (1 << 20);
        assertEquals(connections * flood.perConnection() + readBack, flood.answered(), "every request answered once");
        Map<String, Integer> answered = flood.answeredByVariant();
        for (NbdFlood.Variant variant : flood.variants()) {
            assertTrue(answered.getOrDefault(variant.toString(), 0) >= plan.burst() * connections,
                    () -> variant + " was not sent in depth: " + answered);
        }
    }

    @ParameterizedTest(name = "{0}, {1}")
    @MethodSource("backends")
    void sigtermDuringAFloodOnFourConnections(String backend, String cache)
            throws Exception
    {
        long seed = seed("sigterm" + backend + cache);
        byte[] contents = randomContents(seed);
        Path image = dir.resolve("disk.img");
        Files.write(image, contents);
        server = serve(backend, cache, image);
        int connections = 4;
        int[] exit = new int[1];

        assertTimeoutPreemptively(DEADLINE, () -> {
            int flags = connect(connections);
            // every command with FUA: the deepest queue of work that must be made durable when jloop stops
            flood = new NbdFlood(seed, contents, flags, connections, new NbdFlood.Plan(DEPTH / connections, 100_000, 32 << 10, CMD_FLAG_FUA));
            List<CompletableFuture<Void>> sends = sendAll(clients, flood);
            long start = System.nanoTime();
            // mid-flood: a thousand answered, or two seconds of trying on a busy machine
            while (flood.answered() < 1000 && System.nanoTime() - start < 2_000_000_000L && sends.stream().noneMatch(CompletableFuture::isDone)) {
                Thread.sleep(10);
            }
            assertTrue(sends.stream().noneMatch(CompletableFuture::isDone), () -> hangReport("the flood ended before SIGTERM"));
            flood.expectShutdown();
            exit[0] = stopServer();
            flood.stop();
            closeClients();
        }, () -> hangReport("jloop did not answer every request within " + DEADLINE.toSeconds() + " s"));

        assertEquals(0, exit[0], server.log());
        assertFalse(flood.hasProblems(), flood::problems);
        assertTrue(flood.answered() > 0, "no request was answered");
        // What jloop answered before it stopped is in the file; what it never answered may or may not be.
        int mismatch = flood.mismatch(0, Files.readAllBytes(image), 0, DISK_SIZE);
        assertEquals(-1, mismatch, () -> "the file differs from the model at offset " + mismatch + " (seed " + seed + ")");
    }

    private JloopProcess serve(String backend, String cache, Path image)
            throws Exception
    {
        List<String> args = new ArrayList<>(List.of("--backend", backend, "--socket", dir.resolve("nbd.sock").toString()));
        if (cache.equals("direct")) {
            args.add("--direct");
        }
        args.add(image.toString());
        return JloopProcess.serve(dir, args.toArray(String[]::new));
    }

    /** Opens the connections; returns the transmission flags, checked to be the same on each. */
    private int connect(int connections)
            throws IOException
    {
        for (int i = 0; i < connections; i++) {
            clients.add(PipelinedNbdClient.connect(UnixDomainSocketAddress.of(dir.resolve("nbd.sock")), i, WINDOW,
                    (client, request, error, data) -> flood.reply(client, request, error, data)));
        }
        int flags = clients.get(0).transmissionFlags();
        for (PipelinedNbdClient client : clients) {
            assertEquals(DISK_SIZE, client.exportSize(), "export size");
            assertEquals(flags, client.transmissionFlags(), "the same flags on every connection");
        }
        assertEquals(REQUIRED_FLAGS, flags & REQUIRED_FLAGS, () -> "transmission flags 0x" + Integer.toHexString(flags));
        return flags;
    }

    private static List<CompletableFuture<Void>> sendAll(List<PipelinedNbdClient> clients, PipelinedNbdClient.RequestSource source)
    {
        return clients.stream().map(client -> client.send(source)).toList();
    }

    /** Waits for every connection; fails at once, with the flood's state, if one of them failed. */
    private void await(String what, List<CompletableFuture<Void>> sends)
            throws InterruptedException
    {
        try {
            CompletableFuture.allOf(sends.toArray(CompletableFuture[]::new)).get();
        }
        catch (ExecutionException e) {
            fail(hangReport(what + " failed: " + e.getCause().getMessage()), e.getCause());
        }
    }

    /** SIGTERM; the exit code, or a failure with what was in flight and jloop's threads if it is still running after {@link #SIGTERM_TIMEOUT}. */
    private int stopServer()
            throws InterruptedException
    {
        int answered = flood.answered();
        server.terminate();
        OptionalInt exitCode = server.awaitExit(SIGTERM_TIMEOUT);
        if (exitCode.isEmpty()) {
            fail(hangReport("jloop did not exit within " + SIGTERM_TIMEOUT.toSeconds() + " s of SIGTERM, sent after " + answered + " replies"));
        }
        return exitCode.getAsInt();
    }

    /** Closes every connection; returns why those that failed before did. */
    private List<String> closeClients()
            throws IOException
    {
        List<Request> unanswered = new ArrayList<>();
        List<String> failures = new ArrayList<>();
        for (PipelinedNbdClient client : clients) {
            client.close();
            unanswered.addAll(client.outstanding());
            if (client.failure() != null) {
                failures.add(client.failure().toString());
            }
        }
        if (flood != null) {
            flood.forget(unanswered);
        }
        clients.clear();
        return failures;
    }

    /** {@code headline}, then what every connection is waiting for: the requests never answered, by command, and jloop's threads. */
    private String hangReport(String headline)
    {
        NbdFlood current = flood;
        StringBuilder report = new StringBuilder(headline).append('\n');
        if (current == null) {
            report.append("no flood started (handshake?)\n");
        }
        else {
            report.append(String.format("seed %d; %d replies, the last one %d ms ago%n", current.seed(), current.answered(), current.millisSinceLastReply()));
        }
        List<PipelinedNbdClient> connections = List.copyOf(clients);
        List<Request> all = connections.stream().flatMap(client -> client.outstanding().stream()).toList();
        report.append(String.format("%d requests never answered, by command: %s%n", all.size(), byCommand(all)));
        for (PipelinedNbdClient client : connections) {
            List<Request> unanswered = client.outstanding();
            report.append(String.format("  connection %d: %d sent, %d answered, %d never answered", client.id(), client.sent(), client.answered(),
                    unanswered.size()));
            Request writing = client.writing();
            if (writing != null) {
                report.append("; jloop is not reading requests, the writer is blocked sending ").append(writing);
            }
            if (client.failure() != null) {
                report.append("; failed: ").append(client.failure().getMessage());
            }
            if (connections.size() <= 4 && !unanswered.isEmpty()) {
                report.append("\n    ").append(byCommand(unanswered)).append(", the first: ")
                        .append(unanswered.stream().limit(6).map(Request::toString).collect(Collectors.joining(", ")));
            }
            report.append('\n');
        }
        if (current != null && current.hasProblems()) {
            report.append(current.problems()).append('\n');
        }
        report.append(dumpThreads());
        List<String> log = server.log().lines().toList();
        report.append("\njloop's log (last lines):\n  ").append(String.join("\n  ", log.subList(Math.max(0, log.size() - 15), log.size())));
        return report.toString();
    }

    private static Map<String, Long> byCommand(List<Request> requests)
    {
        return requests.stream().collect(Collectors.groupingBy(r -> PipelinedNbdClient.command(r.type(), r.flags()), TreeMap::new, Collectors.counting()));
    }

    private String dumpThreads()
    {
        if (CiAssumptions.findCommand("jcmd") == null) {
            return "(no jcmd for a thread dump)";
        }
        try {
            Exec dump = Exec.run(30, "jcmd", Long.toString(server.pid()), "Thread.print");
            Files.createDirectories(DUMPS);
            Path file = DUMPS.resolve(testName + ".txt").toAbsolutePath();
            Files.writeString(file, dump.stdout() + dump.stderr());
            return "jloop's threads: " + file;
        }
        catch (IOException | RuntimeException | AssertionError e) {
            return "(no thread dump: " + e + ")";
        }
    }

    private static long seed(String name)
    {
        return Long.getLong("jloop.stress.seed", 20261207L) * 31 + name.hashCode();
    }

    private static byte[] randomContents(long seed)
    {
        byte[] contents = new byte[DISK_SIZE];
        new SplittableRandom(seed).nextBytes(contents);
        return contents;
    }
}
