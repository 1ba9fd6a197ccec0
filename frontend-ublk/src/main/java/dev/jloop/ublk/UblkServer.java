package dev.jloop.ublk;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.DeviceCapabilities;
import dev.jloop.api.DeviceCapabilities.Support;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendStatus;
import dev.jloop.api.StillServingException;
import dev.jloop.iter.PagePool;
import dev.jloop.posix.Errors;
import dev.jloop.posix.NativeIoException;
import dev.jloop.uring.IoUring;
import dev.jloop.uring.Ring;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeoutException;

import static java.util.Objects.requireNonNull;

/**
 * A ublk device served from a {@link BlockDevice}: the kernel's {@code /dev/ublkbN}.
 *
 * <p>Bring-up, in the order the driver requires: GET_FEATURES, ADD_DEV, SET_PARAMS (only allowed
 * before START_DEV), open {@code /dev/ublkcN}, one {@link UblkQueue} thread per queue that maps its
 * descriptors and fetches every tag, then START_DEV (which waits for those fetches and adds the disk).
 *
 * <p>Teardown ({@link #close()}): fsync of {@code /dev/ublkbN} so the page cache is written back while
 * every queue serves, then STOP_DEV while the queues still serve (the disk goes away after writing back
 * what is still dirty, requests in flight complete, the kernel aborts every fetch; its timeout restarts
 * as long as the queues make progress, and while it is pending the queues are never stopped), the
 * queue threads end, the character device is closed (DEL_DEV waits for that), DEL_DEV_ASYNC or DEL_DEV frees the id. Nothing is left behind: no
 * {@code /dev/ublkcN} and no id (a file system still mounted on the disk keeps the id until it is
 * unmounted). The block device itself is not closed; its creator flushes and closes it afterwards.
 *
 * <p>User recovery: devices are created with USER_RECOVERY and USER_RECOVERY_REISSUE where the kernel
 * has them, so that a server that dies without this teardown (SIGKILL, a crash) leaves the device
 * waiting (QUIESCED) with its I/O, and a new server can take it over ({@link Config#recover()}). What
 * the device serves is kept in a {@link UblkState} file from START_DEV until DEL_DEV. With recovery,
 * STOP_DEV on a live device first waits for the requests the queues hold, then fails every later one
 * (ublk_drv's {@code ublk_stop_dev} unquiesces with {@code force_abort}) instead of serving it: the
 * fsync before it is what writes the page cache back.
 */
public final class UblkServer
        implements Frontend
{
    private static final Logger log = LoggerFactory.getLogger(UblkServer.class);

    static final int DEFAULT_BUFFER_BYTES = 512 << 10;
    /** Buffers of all tags together stay under this; many queues or deep ones get smaller buffers (down to 64 KiB). */
    static final long MAX_BUFFER_MEMORY = 256L << 20;

    private final UblkDriver driver;
    private final Config config;
    private final BlockDevice device;
    /** Where the device's state file goes, or {@code null} for none. */
    private final Path stateDirectory;
    private final Map<String, String> origin;
    private final List<UblkQueue> queues = new ArrayList<>();
    private UblkControl control;
    private UblkDriver.CharDevice charDevice;
    private PagePool pool;
    private int devId = -1;
    private boolean started;
    /** Taking over an existing device: a failure before it serves leaves the device to wait for another attempt. */
    private boolean recovering;
    private int bufferBytes;
    private boolean closed;
    private long features = -1;
    private UblkStructs.DevInfo info;

    /**
     * Settings of one device; {@code devId} -1 lets the kernel pick. {@code userRecovery}: create it
     * with USER_RECOVERY and USER_RECOVERY_REISSUE where the kernel has them, so that it waits for a
     * new server when this one dies. {@code recover}: if device {@code devId} exists and waits for a
     * server, take it over instead of creating it (and create it when there is none).
     */
    public record Config(int queues, int queueDepth, int devId, int bufferBytes, Duration commandTimeout, Duration startTimeout,
            boolean userRecovery, boolean recover)
    {
        public Config
        {
            if (queues < 1 || queues > 4096) {
                throw new IllegalArgumentException("ublk queues must be from 1 to 4096: " + queues);
            }
            if (queueDepth < 1 || queueDepth > UblkCmd.MAX_QUEUE_DEPTH) {
                throw new IllegalArgumentException("ublk queue depth must be from 1 to " + UblkCmd.MAX_QUEUE_DEPTH + ": " + queueDepth);
            }
            if (devId < -1) {
                throw new IllegalArgumentException("ublk device id must be 0 or more: " + devId);
            }
            if (Integer.bitCount(bufferBytes) != 1 || bufferBytes < 4096 || bufferBytes > PagePool.SLAB_SIZE / 4) {
                throw new IllegalArgumentException("ublk buffer size must be a power of two from 4 KiB to 1 MiB: " + bufferBytes);
            }
            requireNonNull(commandTimeout, "commandTimeout is null");
            requireNonNull(startTimeout, "startTimeout is null");
            if (recover && devId < 0) {
                throw new IllegalArgumentException("recovering a ublk device needs its number");
            }
        }

        /** A device created with user recovery. */
        public Config(int queues, int queueDepth, int devId, int bufferBytes, Duration commandTimeout, Duration startTimeout)
        {
            this(queues, queueDepth, devId, bufferBytes, commandTimeout, startTimeout, true, false);
        }

        public static Config defaults()
        {
            return new Config(1, 128, -1, DEFAULT_BUFFER_BYTES, Duration.ofSeconds(10), Duration.ofSeconds(60));
        }

        public Config withRecovery(boolean userRecovery, boolean recover)
        {
            return new Config(queues, queueDepth, devId, bufferBytes, commandTimeout, startTimeout, userRecovery, recover);
        }
    }

    private UblkServer(UblkDriver driver, Config config, BlockDevice device, Path stateDirectory, Map<String, String> origin)
    {
        this.driver = requireNonNull(driver, "driver is null");
        this.config = requireNonNull(config, "config is null");
        this.device = requireNonNull(device, "device is null");
        this.stateDirectory = stateDirectory;
        this.origin = Map.copyOf(requireNonNull(origin, "origin is null"));
    }

    /**
     * Creates and starts {@code /dev/ublkbN} for {@code device} through the kernel's ublk_drv, or takes
     * over a device that waits for a server ({@link Config#recover()}); records what it serves in
     * {@code stateDirectory} ({@link UblkState}) with {@code origin}.
     */
    public static UblkServer start(Config config, BlockDevice device, Path stateDirectory, Map<String, String> origin)
            throws IOException
    {
        checkKernel();
        return start(new UringUblkDriver(), config, device, stateDirectory, origin);
    }

    static UblkServer start(UblkDriver driver, Config config, BlockDevice device)
            throws IOException
    {
        return start(driver, config, device, null, Map.of());
    }

    static UblkServer start(UblkDriver driver, Config config, BlockDevice device, Path stateDirectory, Map<String, String> origin)
            throws IOException
    {
        UblkServer server = new UblkServer(driver, config, device, stateDirectory, origin);
        try {
            server.bringUp();
        }
        catch (IOException | RuntimeException e) {
            server.teardown(e);
            throw e;
        }
        return server;
    }

    /** The failures a user can act on, said before anything is tried. */
    private static void checkKernel()
            throws IOException
    {
        if (!Files.exists(Path.of(UringUblkDriver.CONTROL_PATH))) {
            throw new IOException(UringUblkDriver.CONTROL_PATH + " does not exist: the ublk_drv kernel module is not loaded"
                    + " (run `modprobe ublk_drv` as root; ublk needs Linux 6.0 or later, 6.12 or later recommended,"
                    + " built with CONFIG_BLK_DEV_UBLK)");
        }
        if (!IoUring.isAvailable()) {
            throw new IOException("ublk needs io_uring, which is not available here: " + IoUring.unavailabilityCause());
        }
        try (Ring ring = Ring.builder(2).open()) {
            if (!ring.isSupported(IoUring.OP_URING_CMD)) {
                throw new IOException("the kernel's io_uring lacks IORING_OP_URING_CMD, which ublk needs (Linux 6.0 or later)");
            }
        }
    }

    private void bringUp()
            throws IOException
    {
        control = new UblkControl(openControl(), config.commandTimeout());
        features = control.getFeatures();
        if (features >= 0) {
            log.info("ublk driver features 0x{}: {}", Long.toHexString(features), UblkCmd.featureNames(features));
        }
        if (config.recover()) {
            UblkStructs.DevInfo existing = control.getDeviceInfo(config.devId());
            if (existing != null) {
                recover(existing);
                return;
            }
            log.info("ublk device {} does not exist: creating it", config.devId());
        }
        create();
    }

    private void create()
            throws IOException
    {
        DeviceCapabilities caps = device.capabilities();
        long wantedFlags = control.ioctlEncoding() ? UblkCmd.F_CMD_IOCTL_ENCODE : 0;
        if (config.userRecovery()) {
            // before 6.5 nothing says what the kernel has; ADD_DEV clears the flags it does not know
            long recovery = UblkCmd.F_USER_RECOVERY | UblkCmd.F_USER_RECOVERY_REISSUE;
            if (features < 0 || (features & recovery) == recovery) {
                wantedFlags |= recovery;
            }
        }
        int wantedBufferBytes = bufferBytes(config);
        info = control.addDevice(new UblkStructs.DevInfo(config.queues(), config.queueDepth(), 0, wantedBufferBytes,
                config.devId(), 0, wantedFlags, 0, 0));
        devId = info.devId();
        if (info.nrHwQueues() < 1 || info.queueDepth() < 1 || info.maxIoBufBytes() < 4096) {
            throw new IOException("ublk ADD_DEV returned an unusable device: " + info);
        }
        if (info.nrHwQueues() != config.queues() || info.queueDepth() != config.queueDepth()) {
            log.info("ublk device {}: the kernel set {} queues of depth {} (asked for {} of {})", devId, info.nrHwQueues(),
                    info.queueDepth(), config.queues(), config.queueDepth());
        }
        bufferBytes = Math.min(wantedBufferBytes, Integer.highestOneBit(info.maxIoBufBytes()));
        control.setParams(devId, params(caps, device.size(), bufferBytes));
        startQueues();
        control.startDevice(devId, ProcessHandle.current().pid(), config.startTimeout());
        started = true;
        writeState();
        log.info("ublk device {}: {} queue(s) of depth {}, {} KiB buffers, features {}, flags 0x{}, {} commands, {}",
                devId, info.nrHwQueues(), info.queueDepth(), bufferBytes >> 10, features < 0 ? "unknown (before 6.5)" : "0x" + Long.toHexString(features),
                Long.toHexString(info.flags()), control.ioctlEncoding() ? "ioctl-encoded" : "legacy", recoveryText());
    }

    private String recoveryText()
    {
        if (hasUserRecovery(info.flags())) {
            return "user recovery with reissue (a new server can take the device over: jloop ublk recover " + devId + ")";
        }
        if (config.userRecovery()) {
            return "no user recovery: the kernel lacks it (Linux 6.1 or later has it); the disk goes away with this server";
        }
        return "no user recovery (--no-recovery): the disk goes away with this server";
    }

    private static boolean hasUserRecovery(long flags)
    {
        return (flags & UblkCmd.F_USER_RECOVERY) != 0;
    }

    /** Many queues or deep ones get smaller buffers, down to 64 KiB, so that all of them stay under {@link #MAX_BUFFER_MEMORY}. */
    private static int bufferBytes(Config config)
    {
        int bytes = config.bufferBytes();
        while (bytes > (64 << 10) && (long) config.queues() * config.queueDepth() * bytes > MAX_BUFFER_MEMORY) {
            bytes >>= 1;
        }
        return bytes;
    }

    /**
     * Takes over a device whose server died: it must wait for a server (QUIESCED), and its state file
     * must say that it serves what this server serves. START_USER_RECOVERY, then the queues fetch every
     * tag from this process, then END_USER_RECOVERY hands the waiting requests (and, with REISSUE,
     * those that were in flight at the death) to them. Parameters cannot change: the disk stays as it is.
     */
    private void recover(UblkStructs.DevInfo existing)
            throws IOException
    {
        int id = config.devId();
        if (stateDirectory == null) {
            throw new IOException("no state directory to check ublk device " + id + " against");
        }
        UblkDevices.Waiting waiting = UblkDevices.waitingForServer(control, stateDirectory, id, existing, config.startTimeout());
        UblkState state = waiting.state();
        existing = waiting.info();
        String mismatch = mismatch(state, existing);
        if (mismatch != null) {
            throw new IOException("ublk device " + id + " does not match its state file " + UblkState.path(stateDirectory, id) + ": " + mismatch);
        }
        recovering = true;
        devId = id;
        info = existing;
        bufferBytes = state.bufferBytes();
        startUserRecovery();
        startQueues();
        control.endUserRecovery(devId, ProcessHandle.current().pid(), config.startTimeout());
        started = true;
        recovering = false;
        writeState();
        log.info("ublk device {}: recovered, {} queue(s) of depth {}, {} KiB buffers; the requests that waited are served again",
                devId, info.nrHwQueues(), info.queueDepth(), bufferBytes >> 10);
    }

    /**
     * START_USER_RECOVERY, tried again while the kernel answers EBUSY for a while: the dead server's
     * rings are torn down after its process has gone, and until then they hold {@code /dev/ublkcN}.
     */
    private void startUserRecovery()
            throws IOException
    {
        long deadline = System.nanoTime() + config.startTimeout().toNanos();
        while (true) {
            try {
                control.startUserRecovery(devId);
                return;
            }
            catch (UblkException e) {
                if (e.errno() != Errors.EBUSY || System.nanoTime() > deadline) {
                    throw e;
                }
            }
            UblkDevices.pause();
        }
    }

    /** Why this server cannot serve the device its state file describes (queues aside), or {@code null} when it can. */
    private String mismatch(UblkState state, UblkStructs.DevInfo existing)
    {
        if (Integer.bitCount(state.bufferBytes()) != 1 || state.bufferBytes() > existing.maxIoBufBytes() || state.bufferBytes() > config.bufferBytes()) {
            return "it records " + state.bufferBytes() + "-byte buffers, the kernel allows " + existing.maxIoBufBytes();
        }
        String files = origin.getOrDefault("files", "");
        if (!state.files().equals(files)) {
            return "it serves " + printable(state.files()) + ", this server " + printable(files)
                    + (state.origin().containsKey("directory") ? " (relative paths are resolved from " + state.origin().get("directory") + ")" : "");
        }
        if (state.size() != device.size()) {
            return "it serves " + state.size() + " bytes, this server " + device.size();
        }
        return null;
    }

    private static String printable(String files)
    {
        return files.isEmpty() ? "(no file)" : String.join(", ", files.split("\n"));
    }

    private void startQueues()
            throws IOException
    {
        charDevice = driver.openCharDevice(devId);
        long poolBytes = (long) info.nrHwQueues() * info.queueDepth() * bufferBytes;
        pool = new PagePool(poolBytes);
        pool.reserve(poolBytes);
        device.registerMemory(pool.slabs());
        for (int q = 0; q < info.nrHwQueues(); q++) {
            UblkQueue queue = new UblkQueue(q, info.queueDepth(), bufferBytes, control.ioctlEncoding(), charDevice, device, pool);
            queues.add(queue);
            queue.start();
        }
        try {
            for (UblkQueue queue : queues) {
                queue.awaitFetched(config.startTimeout().toMillis());
            }
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while the ublk queues started");
        }
    }

    /** The state file, for a later recovery and for {@code jloop ublk list}; a failure to write it costs only those. */
    private void writeState()
    {
        if (stateDirectory == null) {
            return;
        }
        try {
            new UblkState(devId, ProcessHandle.current().pid(), info.nrHwQueues(), info.queueDepth(), bufferBytes, device.size(),
                    hasUserRecovery(info.flags()), origin).write(stateDirectory);
        }
        catch (IOException | RuntimeException e) {
            log.warn("ublk device {}: cannot write its state file in {}: {}; jloop ublk recover and list will not know it", devId,
                    stateDirectory, e.toString());
        }
    }

    private void deleteState()
    {
        if (stateDirectory == null) {
            return;
        }
        try {
            UblkState.delete(stateDirectory, devId);
        }
        catch (IOException e) {
            log.warn("ublk device {}: cannot remove its state file: {}", devId, e.toString());
        }
    }

    private UblkDriver.ControlChannel openControl()
            throws IOException
    {
        try {
            return driver.openControl();
        }
        catch (UblkException e) {
            if (e.errno() == Errors.EACCES || e.errno() == Errors.EPERM) {
                throw new UblkException(e.syscall(), -e.errno(), "ublk needs root (CAP_SYS_ADMIN)");
            }
            if (e.errno() == Errors.ENOENT || e.errno() == Errors.ENODEV) {
                throw new UblkException(e.syscall(), -e.errno(), "load the kernel module with `modprobe ublk_drv` (Linux 6.0+)");
            }
            throw e;
        }
        catch (NativeIoException e) {
            if (e.errno() == Errors.EINVAL) {
                throw new IOException(e.getMessage() + "; the kernel's io_uring lacks 128-byte SQEs (ublk needs Linux 6.0 or later)", e);
            }
            throw e;
        }
    }

    /**
     * {@code struct ublk_params}, a translation of what the device offers: 512-byte logical blocks
     * (4096 when it prefers aligned I/O, under O_DIRECT), a volatile cache when it flushes, FUA when it
     * offers it, discard and write-zeroes when it offers them, read-only as it says.
     */
    static UblkStructs.Params params(DeviceCapabilities caps, long size, int bufferBytes)
    {
        int logical = Math.max(512, caps.logicalBlockSize());
        int logicalShift = Integer.numberOfTrailingZeros(Integer.highestOneBit(Math.min(logical, 4096)));
        int physicalShift = Math.max(logicalShift, 12);
        int attrs = 0;
        if (caps.readOnly()) {
            attrs |= UblkCmd.ATTR_READ_ONLY;
        }
        if (caps.flush() && !caps.readOnly()) {
            attrs |= UblkCmd.ATTR_VOLATILE_CACHE;
        }
        if (caps.fua() != Support.NONE) {
            attrs |= UblkCmd.ATTR_FUA;
        }
        // Discard limits exist for every writable device: a discard it cannot deallocate is a no-op.
        boolean discard = !caps.readOnly();
        int maxDiscard = caps.trim() ? (int) (0xffffffffL >> 9) : 0;
        int maxWriteZeroes = caps.zero() != Support.NONE ? (int) (0xffffffffL >> 9) : 0;
        return new UblkStructs.Params(attrs, logicalShift, physicalShift, 12, logicalShift, bufferBytes >> 9,
                (size >> logicalShift << logicalShift) >> 9, discard, 1 << physicalShift, maxDiscard, maxWriteZeroes);
    }

    /** The device id the kernel assigned. */
    public int deviceId()
    {
        return devId;
    }

    /** One of the queues, for tests. */
    UblkQueue queue(int queueId)
    {
        return queues.get(queueId);
    }

    /** {@code GET_FEATURES} bits, or -1 on kernels before 6.5. */
    public long features()
    {
        return features;
    }

    @Override
    public String uri()
    {
        return "/dev/ublkb" + devId;
    }

    /** {@code device}: the block device, for a command of {@code --run}. */
    @Override
    public Map<String, String> environment()
    {
        return Map.of("device", uri());
    }

    /** Requests received and completed by all queues so far; grows while I/O makes progress. */
    private long activity()
    {
        long sum = 0;
        for (UblkQueue queue : queues) {
            sum += queue.activity();
        }
        return sum;
    }

    /**
     * Writes the disk's dirty page cache back (fsync of {@code /dev/ublkbN}) while every queue still
     * serves, before STOP_DEV removes the disk. Waits as long as the queues make progress; when
     * nothing moves for a command timeout, or the sync fails, STOP_DEV goes ahead (it writes back what
     * is left itself).
     */
    private void syncBlockDevice()
    {
        FutureTask<Void> sync = new FutureTask<>(() -> {
            driver.syncBlockDevice(devId);
            return null;
        });
        Thread thread = new Thread(sync, "ublk-sync-" + devId);
        thread.setDaemon(true);
        thread.start();
        try {
            UblkControl.awaitWhileProgressing(sync, config.commandTimeout(), this::activity);
        }
        catch (TimeoutException e) {
            log.warn("ublk device {}: writing back its page cache made no progress for {} ms; stopping it anyway", devId,
                    config.commandTimeout().toMillis());
        }
        catch (ExecutionException e) {
            log.warn("ublk device {}: writing back its page cache failed: {}", devId, e.getCause().toString());
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** STOP_DEV, drain the queues, close the character device, DEL_DEV. Idempotent. */
    @Override
    public FrontendStatus status()
    {
        List<Integer> depths = new ArrayList<>();
        for (UblkQueue queue : List.copyOf(queues)) {
            depths.add(queue.inFlight());
        }
        PagePool current = pool;
        long used = current == null ? 0 : current.usedBytes();
        return new FrontendStatus(List.of(), used, current == null ? 0 : Math.max(0, current.slabBytes() - used), depths);
    }

    @Override
    public synchronized void close()
    {
        if (closed) {
            return;
        }
        closed = true;
        IOException failure = teardown(null);
        if (failure instanceof UblkControl.CommandTimeoutException) {
            throw new StillServingException(failure.getMessage() + "; its queues keep serving, the device must stay open", failure);
        }
        if (failure != null) {
            throw new UncheckedIOException(failure);
        }
    }

    private IOException teardown(Exception cause)
    {
        List<Exception> failures = new ArrayList<>();
        if (started && control != null) {
            syncBlockDevice();
            try {
                control.stopDevice(devId, this::activity);
            }
            catch (UblkControl.CommandTimeoutException e) {
                // STOP_DEV is still in the kernel and may yet send writeback: the queues must keep
                // serving it, so they are neither stopped nor closed; they end with the process
                log.error("ublk device {}: {}; its queues are left serving until the process ends", devId, e.getMessage());
                control.close();
                return failure(List.of(e), cause);
            }
            catch (IOException e) {
                failures.add(e);
            }
        }
        // After STOP_DEV every queue ends by itself once the kernel has aborted its tags; without it
        // (failed bring-up, or a kernel that keeps the fetches) the queues are told to end.
        long waitMillis = started ? config.commandTimeout().toMillis() : 0;
        for (UblkQueue queue : queues) {
            try {
                if (!queue.awaitExit(waitMillis)) {
                    queue.requestStop();
                }
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                queue.requestStop();
            }
        }
        for (UblkQueue queue : queues) {
            try {
                if (!queue.awaitExit(config.commandTimeout().toMillis())) {
                    failures.add(new IOException("ublk queue thread did not end"));
                }
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (charDevice != null) {
            charDevice.close();
        }
        if (pool != null && pool.usedBytes() == 0) {
            pool.close();
        }
        if (recovering) {
            // the device keeps waiting for a server, as before this attempt
            log.warn("ublk device {}: recovery failed; the device still waits for a server", devId);
        }
        else if (devId >= 0 && control != null) {
            deleteState();
            try {
                if (!control.deleteDevice(devId, config.commandTimeout())) {
                    log.warn("ublk device {} is deleted but still in use (a file system on /dev/ublkb{} still mounted?);"
                            + " the kernel frees id {} when its last user lets go", devId, devId, devId);
                }
            }
            catch (IOException e) {
                failures.add(e);
            }
        }
        if (control != null) {
            control.close();
        }
        return failure(failures, cause);
    }

    private static IOException failure(List<Exception> failures, Exception cause)
    {
        if (failures.isEmpty()) {
            return null;
        }
        IOException failure = failures.get(0) instanceof IOException ? (IOException) failures.get(0) : new IOException(failures.get(0));
        for (Exception e : failures.subList(1, failures.size())) {
            failure.addSuppressed(e);
        }
        if (cause != null) {
            cause.addSuppressed(failure);
        }
        return failure;
    }
}
