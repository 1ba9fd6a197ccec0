package dev.jloop.testkit;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static java.util.Objects.requireNonNull;

/**
 * A one-node Ceph cluster for the tests of the {@code rbd} backend: one monitor and one BlueStore OSD
 * on a sparse file, with cephx, on loopback only, with ports of its own, everything (configuration,
 * keys, data, sockets, logs) under one directory of {@code target/}. No manager: block I/O needs
 * none, and it would cost 300 MB. It starts in about five seconds and has a pool {@value #POOL}
 * initialised for RBD.
 *
 * <p>{@link #shared()} starts one per test JVM, on first use, and stops it (SIGTERM to each daemon,
 * by process id) when the JVM exits; the tests of a module share it and make images of their own
 * names. A test that needs it calls {@link #assumeShared()}, which skips the test where Ceph is not
 * installed and fails it on CI ({@link CiAssumptions}).
 *
 * <p>The packages (Debian): {@code ceph-mon ceph-osd ceph-common librbd1}.
 */
public final class CephCluster
        implements AutoCloseable
{
    /** The pool made for the tests' images. */
    public static final String POOL = "rbd";

    private static final long COMMAND_TIMEOUT_SECONDS = 60;
    private static final long START_TIMEOUT_SECONDS = 60;
    private static final List<String> COMMANDS = List.of("ceph-mon", "ceph-osd", "ceph", "rbd", "ceph-authtool", "monmaptool");

    private static CephCluster shared;
    private static Throwable sharedFailure;

    private final Path dir;
    private final Path conf;
    private final Path keyring;
    private final int monPort;
    private final List<Process> daemons = new ArrayList<>();

    private CephCluster(Path dir, int monPort)
    {
        this.dir = requireNonNull(dir, "dir is null");
        this.conf = dir.resolve("ceph.conf");
        this.keyring = dir.resolve("keyring");
        this.monPort = monPort;
    }

    /**
     * The cluster of this JVM, started on the first call; skips the calling test when Ceph is not
     * installed or the cluster does not start, and fails it on CI.
     */
    public static CephCluster assumeShared()
    {
        String missing = missingCommand();
        CiAssumptions.assumeAvailable(missing == null, "Ceph is not installed (no " + missing + " on PATH; apt-get install ceph-mon ceph-osd ceph-common librbd1)");
        CephCluster cluster = null;
        Throwable failure;
        try {
            cluster = shared();
            failure = null;
        }
        catch (IOException | RuntimeException e) {
            failure = e;
        }
        CiAssumptions.assumeAvailable(cluster != null, "the one-node Ceph cluster did not start: " + failure);
        return cluster;
    }

    /** The cluster of this JVM, started on the first call and stopped when the JVM exits. */
    public static synchronized CephCluster shared()
            throws IOException
    {
        if (shared != null) {
            return shared;
        }
        if (sharedFailure != null) {
            throw new IOException("the Ceph cluster failed to start before: " + sharedFailure.getMessage(), sharedFailure);
        }
        try {
            Path base = Files.createDirectories(Path.of("target", "jloop-tmp")).toAbsolutePath();
            CephCluster cluster = start(Files.createTempDirectory(base, "ceph-"));
            Runtime.getRuntime().addShutdownHook(new Thread(cluster::close, "ceph-cluster-stop"));
            shared = cluster;
            return cluster;
        }
        catch (IOException | RuntimeException e) {
            sharedFailure = e;
            throw e;
        }
    }

    /** The first of the commands the cluster needs that is not on PATH, or {@code null}. */
    public static String missingCommand()
    {
        return COMMANDS.stream().filter(command -> CiAssumptions.findCommand(command) == null).findFirst().orElse(null);
    }

    /** Makes and starts a cluster in the empty directory {@code dir}. */
    public static CephCluster start(Path dir)
            throws IOException
    {
        int monPort = freePortRange(42);
        CephCluster cluster = new CephCluster(dir, monPort);
        try {
            cluster.bootstrap();
        }
        catch (IOException | RuntimeException e) {
            cluster.close();
            throw new IOException(e.getMessage() + " (logs in " + dir.resolve("log") + ")", e);
        }
        return cluster;
    }

    /**
     * Starts a cluster in the empty directory {@code args[0]}, prints {@code ceph.conf PATH} on a line of
     * its own, and stops it when standard input ends: for {@code bench/run --rbd}, which needs the
     * tests' cluster outside a test.
     */
    public static void main(String[] args)
            throws IOException
    {
        if (args.length != 1) {
            System.err.println("usage: CephCluster EMPTY-DIRECTORY  (runs until standard input ends)");
            System.exit(2);
        }
        try (CephCluster cluster = start(Files.createDirectories(Path.of(args[0]).toAbsolutePath()))) {
            System.out.println("ceph.conf " + cluster.conf());
            System.out.flush();
            while (System.in.read() >= 0) {
                // until the parent closes our standard input, or exits
            }
        }
    }

    /** The configuration file clients use ({@code -c}, {@code CEPH_CONF}, {@code --ceph-conf}); it names the keyring. */
    public Path conf()
    {
        return conf;
    }

    /** The keyring with {@code client.admin}'s key. */
    public Path keyring()
    {
        return keyring;
    }

    /** The monitor's address, {@code 127.0.0.1:PORT}. */
    public String monHost()
    {
        return "127.0.0.1:" + monPort;
    }

    public Path directory()
    {
        return dir;
    }

    /** Runs {@code rbd ARGS...} against this cluster; returns its standard output, fails on a non-zero exit. */
    public String rbd(String... args)
            throws IOException
    {
        List<String> command = new ArrayList<>(List.of("rbd", "-c", conf.toString()));
        command.addAll(List.of(args));
        return run(command);
    }

    /** Runs {@code ceph ARGS...} against this cluster; returns its standard output, fails on a non-zero exit. */
    public String ceph(String... args)
            throws IOException
    {
        List<String> command = new ArrayList<>(List.of("ceph", "-c", conf.toString()));
        command.addAll(List.of(args));
        return run(command);
    }

    private void bootstrap()
            throws IOException
    {
        for (String sub : List.of("mon", "osd", "run", "log", "crash")) {
            Files.createDirectories(dir.resolve(sub));
        }
        String fsid = UUID.randomUUID().toString();
        // the mon speaks msgr v1 only (one port): clients then do not try v2 first and log about it
        String conf = String.join("\n",
                "[global]",
                "fsid = " + fsid,
                "mon_host = [v1:127.0.0.1:" + monPort + "]",
                "public_addr = 127.0.0.1",
                "cluster_addr = 127.0.0.1",
                "ms_bind_ipv4 = true",
                "ms_bind_ipv6 = false",
                "ms_bind_msgr2 = false",
                // the OSD's ports, next to the mon's, so that two clusters on one machine never meet
                "ms_bind_port_min = " + (monPort + 1),
                "ms_bind_port_max = " + (monPort + 41),
                "auth_cluster_required = cephx",
                "auth_service_required = cephx",
                "auth_client_required = cephx",
                "keyring = " + keyring,
                "run_dir = " + dir.resolve("run"),
                "admin_socket = " + dir.resolve("run") + "/$name.asok",
                "pid_file = " + dir.resolve("run") + "/$name.pid",
                "log_file = " + dir.resolve("log") + "/$name.log",
                "crash_dir = " + dir.resolve("crash"),
                "mon_cluster_log_file = " + dir.resolve("log") + "/cluster.log",
                "osd_pool_default_size = 1",
                "osd_pool_default_min_size = 1",
                "mon_allow_pool_size_one = true",
                "osd_crush_chooseleaf_type = 0",
                "mon_warn_on_pool_no_redundancy = false",
                "mon_mgr_mkfs_grace = 86400",
                "mon_data = " + dir.resolve("mon"),
                "osd_data = " + dir.resolve("osd"),
                "osd_objectstore = bluestore",
                // outside osd_data: BlueStore makes a symlink named block in it
                "bluestore_block_path = " + dir.resolve("block"),
                "bluestore_block_size = 10737418240",
                "bluestore_block_create = true",
                "bluestore_fsck_on_mkfs = false",
                "osd_op_num_shards = 2",
                "osd_op_num_threads_per_shard = 1",
                "osd_memory_target = 1073741824",
                "paxos_propose_interval = 0.2",
                "");
        Files.writeString(this.conf, conf);
        run(List.of("ceph-authtool", "--create-keyring", keyring.toString(), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"));
        run(List.of("ceph-authtool", keyring.toString(), "--gen-key", "-n", "client.admin",
                "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"));
        Path monmap = dir.resolve("monmap");
        run(List.of("monmaptool", "--create", "--fsid", fsid, "--addv", "a", "[v1:127.0.0.1:" + monPort + "]", monmap.toString()));
        run(List.of("ceph-mon", "-c", this.conf.toString(), "--mkfs", "-i", "a", "--monmap", monmap.toString(), "--keyring", keyring.toString()));
        daemon(List.of("ceph-mon", "-c", this.conf.toString(), "-f", "-i", "a"));

        String osdUuid = UUID.randomUUID().toString();
        ceph("osd", "new", osdUuid, "0");
        Path osdKeyring = dir.resolve("osd").resolve("keyring");
        run(List.of("ceph-authtool", "--create-keyring", osdKeyring.toString(), "--gen-key", "-n", "osd.0"));
        ceph("auth", "add", "osd.0", "osd", "allow *", "mon", "allow profile osd", "mgr", "allow profile osd", "-i", osdKeyring.toString());
        run(List.of("ceph-osd", "-c", this.conf.toString(), "-i", "0", "--mkfs", "--osd-uuid", osdUuid, "--keyring", osdKeyring.toString()));
        daemon(List.of("ceph-osd", "-c", this.conf.toString(), "-f", "-i", "0", "--keyring", osdKeyring.toString()));

        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(START_TIMEOUT_SECONDS);
        while (!ceph("osd", "stat").contains("1 up")) {
            if (System.nanoTime() > deadline) {
                throw new IOException("the OSD was not up after " + START_TIMEOUT_SECONDS + " s");
            }
            for (Process daemon : daemons) {
                if (!daemon.isAlive()) {
                    throw new IOException(daemon.info().command().orElse("a daemon") + " exited with " + daemon.exitValue());
                }
            }
            sleep(200);
        }
        ceph("osd", "pool", "create", POOL, "8");
        rbd("pool", "init", POOL);
    }

    private void daemon(List<String> command)
            throws IOException
    {
        Path log = dir.resolve("log").resolve(command.get(0) + ".out");
        Process process = new ProcessBuilder(command)
                .redirectErrorStream(true)
                .redirectOutput(log.toFile())
                .start();
        daemons.add(process);
    }

    private String run(List<String> command)
            throws IOException
    {
        Path out = Files.createTempFile(dir, "cmd-", ".out");
        try {
            Process process = new ProcessBuilder(command)
                    .redirectErrorStream(true)
                    .redirectOutput(out.toFile())
                    .start();
            if (!process.waitFor(COMMAND_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new IOException(String.join(" ", command) + ": no answer within " + COMMAND_TIMEOUT_SECONDS + " s");
            }
            String output = Files.readString(out, StandardCharsets.UTF_8);
            if (process.exitValue() != 0) {
                throw new IOException(String.join(" ", command) + " exited with " + process.exitValue() + ": " + output.strip());
            }
            return output;
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + String.join(" ", command), e);
        }
        finally {
            Files.deleteIfExists(out);
        }
    }

    /**
     * A port with the next {@code count - 1} free too, at the time of asking, below the kernel's
     * ephemeral range (32768 and up on Linux), where outgoing connections come and go.
     */
    private static int freePortRange(int count)
            throws IOException
    {
        java.util.Random random = new java.util.Random();
        for (int attempt = 0; attempt < 100; attempt++) {
            int port = 12000 + random.nextInt(20000 - count);
            boolean free = true;
            for (int p = port; p < port + count && free; p++) {
                free = isFree(p);
            }
            if (free) {
                return port;
            }
        }
        throw new IOException("no range of " + count + " free ports found");
    }

    private static boolean isFree(int port)
    {
        try (ServerSocket socket = new ServerSocket(port)) {
            return socket.getLocalPort() == port;
        }
        catch (IOException e) {
            return false;
        }
    }

    private static void sleep(long millis)
            throws IOException
    {
        try {
            Thread.sleep(millis);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    /** Stops the daemons (SIGTERM, the OSD first) and deletes the directory. */
    @Override
    public synchronized void close()
    {
        for (int i = daemons.size() - 1; i >= 0; i--) {
            daemons.get(i).destroy();
        }
        for (Process daemon : daemons) {
            try {
                if (!daemon.waitFor(10, TimeUnit.SECONDS)) {
                    daemon.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                }
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        daemons.clear();
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(path);
            }
        }
        catch (IOException | UncheckedIOException e) {
            // leave it for mvn clean
        }
    }
}
