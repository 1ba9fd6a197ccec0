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
    private final List<UblkQueue> queues = new ArrayList<>();
    private UblkControl control;
    private UblkDriver.CharDevice charDevice;
    private PagePool pool;
    private int devId = -1;
    private boolean started;
    private boolean closed;
    private long features = -1;
    private UblkStructs.DevInfo info;

    /** Settings of one device; {@code devId} -1 lets the kernel pick. */
    public record Config(int queues, int queueDepth, int devId, int bufferBytes, Duration commandTimeout, Duration startTimeout)
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
        }

        public static Config defaults()
        {
            return new Config(1, 128, -1, DEFAULT_BUFFER_BYTES, Duration.ofSeconds(10), Duration.ofSeconds(60));
        }
    }

    private UblkServer(UblkDriver driver, Config config, BlockDevice device)
    {
        this.driver = requireNonNull(driver, "driver is null");
        this.config = requireNonNull(config, "config is null");
        this.device = requireNonNull(device, "device is null");
    }

    /** Creates and starts {@code /dev/ublkbN} for {@code device} through the kernel's ublk_drv. */
    public static UblkServer start(Config config, BlockDevice device)
            throws IOException
    {
        checkKernel();
        return start(new UringUblkDriver(), config, device);
    }

    static UblkServer start(UblkDriver driver, Config config, BlockDevice device)
            throws IOException
    {
        UblkServer server = new UblkServer(driver, config, device);
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
        DeviceCapabilities caps = device.capabilities();
        long wantedFlags = control.ioctlEncoding() ? UblkCmd.F_CMD_IOCTL_ENCODE : 0;
        int wantedBufferBytes = config.bufferBytes();
        while (wantedBufferBytes > (64 << 10) && (long) config.queues() * config.queueDepth() * wantedBufferBytes > MAX_BUFFER_MEMORY) {
            wantedBufferBytes >>= 1;
        }
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
        int bufferBytes = Math.min(wantedBufferBytes, Integer.highestOneBit(info.maxIoBufBytes()));
        control.setParams(devId, params(caps, device.size(), bufferBytes));

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
        control.startDevice(devId, ProcessHandle.current().pid(), config.startTimeout());
        started = true;
        log.info("ublk device {}: {} queue(s) of depth {}, {} KiB buffers, features {}, flags 0x{}, {} commands",
                devId, info.nrHwQueues(), info.queueDepth(), bufferBytes >> 10, features < 0 ? "unknown (before 6.5)" : "0x" + Long.toHexString(features),
                Long.toHexString(info.flags()), control.ioctlEncoding() ? "ioctl-encoded" : "legacy");
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
        if (devId >= 0 && control != null) {
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
