package dev.jloop.ublk;

import dev.jloop.iter.DirectMemory;
import dev.jloop.posix.Errors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.LongSupplier;

import static java.util.Objects.requireNonNull;

/**
 * The control plane: ublk's commands on {@code /dev/ublk-control}, each bounded by a timeout.
 *
 * <p>Commands run on one daemon thread of their own, because the kernel executes them inside
 * {@code io_uring_enter} (START_DEV waits there for every queue to fetch, DEL_DEV until the character
 * device is released) and a buggy or overloaded driver would otherwise hang the caller for good.
 *
 * <p>Encoding: the ioctl form ({@code UBLK_U_CMD_*}) is used when GET_FEATURES says the kernel knows it
 * ({@link UblkCmd#F_CMD_IOCTL_ENCODE}, Linux 6.4+); otherwise, and when an ioctl-encoded command is
 * refused as unknown, the legacy numbers are tried, as ublksrv does.
 */
final class UblkControl
        implements Closeable
{
    private static final Logger log = LoggerFactory.getLogger(UblkControl.class);

    private final UblkDriver.ControlChannel channel;
    private final Duration timeout;
    private final ExecutorService executor = Executors.newSingleThreadExecutor(runnable -> {
        Thread thread = new Thread(runnable, "ublk-control");
        thread.setDaemon(true);
        return thread;
    });
    private final ByteBuffer cmd = UblkStructs.allocate(UblkCmd.CTRL_CMD_SIZE);
    private final ByteBuffer data = DirectMemory.allocateAligned(UblkCmd.PARAMS_SIZE).order(ByteOrder.nativeOrder());
    private final long dataAddress = DirectMemory.address(data);
    private boolean ioctlEncoding = true;
    /** Features from GET_FEATURES, or -1 when the kernel predates it (before 6.5). */
    private long features = -1;
    private boolean broken;

    UblkControl(UblkDriver.ControlChannel channel, Duration timeout)
    {
        this.channel = requireNonNull(channel, "channel is null");
        this.timeout = requireNonNull(timeout, "timeout is null");
    }

    boolean ioctlEncoding()
    {
        return ioctlEncoding;
    }

    /** GET_FEATURES; returns the feature bits, or -1 on kernels before 6.5 (which then get legacy opcodes). */
    long getFeatures()
            throws IOException
    {
        int res = execute(UblkCmd.CMD_GET_FEATURES, -1, 8, dataAddress, 0, timeout);
        if (isUnknownCommand(res)) {
            ioctlEncoding = false;
            res = execute(UblkCmd.CMD_GET_FEATURES, -1, 8, dataAddress, 0, timeout);
        }
        if (res < 0) {
            features = -1;
            ioctlEncoding = false;
            log.debug("GET_FEATURES failed ({}): kernel before 6.5, legacy commands", Errors.name(res));
            return -1;
        }
        features = data.getLong(0);
        ioctlEncoding = (features & UblkCmd.F_CMD_IOCTL_ENCODE) != 0;
        return features;
    }

    /** ADD_DEV; returns the device as the kernel created it (id assigned, flags negotiated). */
    UblkStructs.DevInfo addDevice(UblkStructs.DevInfo wanted)
            throws IOException
    {
        wanted.write(data);
        int res = execute(UblkCmd.CMD_ADD_DEV, wanted.devId(), UblkCmd.DEV_INFO_SIZE, dataAddress, 0, timeout);
        if (ioctlEncoding && isUnknownCommand(res)) {
            ioctlEncoding = false;
            wanted.write(data);
            res = execute(UblkCmd.CMD_ADD_DEV, wanted.devId(), UblkCmd.DEV_INFO_SIZE, dataAddress, 0, timeout);
        }
        if (res < 0) {
            String hint = null;
            if (res == -Errors.EEXIST) {
                hint = "ublk device id " + wanted.devId() + " is in use (pick another with --ublk-id, or leave it out)";
            }
            else if (res == -Errors.EPERM || res == -Errors.EACCES) {
                hint = "ublk needs root (CAP_SYS_ADMIN)";
            }
            throw new UblkException("ublk ADD_DEV", res, hint);
        }
        return UblkStructs.DevInfo.read(data);
    }

    void setParams(int devId, UblkStructs.Params params)
            throws IOException
    {
        params.write(data);
        check("SET_PARAMS", execute(UblkCmd.CMD_SET_PARAMS, devId, UblkCmd.PARAMS_SIZE, dataAddress, 0, timeout), null);
    }

    /** START_DEV: the kernel waits until every tag of every queue has been fetched, then adds {@code /dev/ublkbN}. */
    void startDevice(int devId, long pid, Duration startTimeout)
            throws IOException
    {
        check("START_DEV", execute(UblkCmd.CMD_START_DEV, devId, 0, 0, pid, startTimeout), null);
    }

    /**
     * STOP_DEV: removes the disk; the kernel aborts every fetched tag with -ENODEV. Removing the disk
     * writes back its dirty page cache through the queues first, which takes as long as the backend
     * needs, so the command timeout only runs out once {@code progress} (the queues' I/O count) has not
     * moved for a whole timeout.
     */
    void stopDevice(int devId, LongSupplier progress)
            throws IOException
    {
        int res = execute(UblkCmd.CMD_STOP_DEV, devId, 0, 0, 0, timeout, requireNonNull(progress, "progress is null"));
        if (res != -Errors.ENODEV) {
            check("STOP_DEV", res, null);
        }
    }

    /**
     * Deletes the device and frees its id. DEL_DEV waits until the last reference to the device is
     * gone, which a file system still mounted on {@code /dev/ublkbN} holds until it is unmounted; the
     * removal itself is done before that wait (ublk_drv's {@code ublk_ctrl_del_dev}), so the wait is
     * bounded by {@code waitLimit} and a device still referenced then is left for the kernel to free.
     * DEL_DEV_ASYNC (6.9+) does exactly that without waiting and is tried first. -ENODEV (already gone)
     * is success. Returns whether the id is known to be free.
     */
    boolean deleteDevice(int devId, Duration waitLimit)
            throws IOException
    {
        if (ioctlEncoding) {
            int res = execute(UblkCmd.CMD_DEL_DEV_ASYNC, devId, 0, 0, 0, timeout);
            if (!isUnknownCommand(res)) {
                if (res != -Errors.ENODEV) {
                    check("DEL_DEV_ASYNC", res, null);
                }
                return isGone(devId);
            }
        }
        try {
            int res = execute(UblkCmd.CMD_DEL_DEV, devId, 0, 0, 0, waitLimit);
            if (res != -Errors.ENODEV) {
                check("DEL_DEV", res, null);
            }
            return true;
        }
        catch (CommandTimeoutException e) {
            return false;
        }
    }

    /** GET_DEV_INFO: the device as the kernel has it (state, serving pid, queues), or {@code null} when there is no device {@code devId}. */
    UblkStructs.DevInfo getDeviceInfo(int devId)
            throws IOException
    {
        int res = execute(UblkCmd.CMD_GET_DEV_INFO, devId, UblkCmd.DEV_INFO_SIZE, dataAddress, 0, timeout);
        if (res == -Errors.ENODEV) {
            return null;
        }
        check("GET_DEV_INFO", res, null);
        return UblkStructs.DevInfo.read(data);
    }

    /**
     * START_USER_RECOVERY: accepted only while the device waits for a server (QUIESCED) and the dead
     * server's {@code /dev/ublkcN} is released; the kernel then takes FETCH_REQs from a new process
     * (ublk_drv's {@code ublk_ctrl_start_recovery}).
     */
    void startUserRecovery(int devId)
            throws IOException
    {
        int res = execute(UblkCmd.CMD_START_USER_RECOVERY, devId, 0, 0, 0, timeout);
        String hint = null;
        if (res == -Errors.EBUSY) {
            hint = "ublk device " + devId + " is not waiting for a server, or its last server has not released /dev/ublkc" + devId + " yet";
        }
        else if (res == -Errors.EINVAL) {
            hint = "ublk device " + devId + " was created without user recovery";
        }
        check("START_USER_RECOVERY", res, hint);
    }

    /** END_USER_RECOVERY: waits until every tag of every queue is fetched, then the waiting requests flow again to {@code pid}. */
    void endUserRecovery(int devId, long pid, Duration limit)
            throws IOException
    {
        check("END_USER_RECOVERY", execute(UblkCmd.CMD_END_USER_RECOVERY, devId, 0, 0, pid, limit), null);
    }

    /** GET_DEV_INFO answers -ENODEV once the device's id has been freed. */
    private boolean isGone(int devId)
            throws IOException
    {
        return execute(UblkCmd.CMD_GET_DEV_INFO, devId, UblkCmd.DEV_INFO_SIZE, dataAddress, 0, timeout) == -Errors.ENODEV;
    }

    private static void check(String name, int res, String hint)
            throws UblkException
    {
        if (res < 0) {
            throw new UblkException("ublk " + name, res, hint);
        }
    }

    private static boolean isUnknownCommand(int res)
    {
        return res == -Errors.EINVAL || res == -Errors.EOPNOTSUPP || res == -Errors.ENOTTY;
    }

    private int execute(int nr, int devId, int len, long addr, long data0, Duration limit)
            throws IOException
    {
        return execute(nr, devId, len, addr, data0, limit, null);
    }

    /** Runs one command; with {@code progress}, {@code limit} restarts whenever progress has moved. */
    private int execute(int nr, int devId, int len, long addr, long data0, Duration limit, LongSupplier progress)
            throws IOException
    {
        if (broken) {
            throw new IOException("ublk control device is unusable after an earlier command timed out");
        }
        int cmdOp = ioctlEncoding ? UblkCmd.ioctlControl(nr) : nr;
        UblkStructs.putCtrlCmd(cmd, 0, devId, UblkStructs.NO_QUEUE, len, addr, data0);
        Future<Integer> result = executor.submit(() -> channel.execute(cmdOp, cmd));
        try {
            int res = awaitWhileProgressing(result, limit, progress);
            log.debug("ublk {} dev {} -> {}", UblkCmd.controlName(nr), devId, res);
            return res;
        }
        catch (TimeoutException e) {
            broken = true;
            throw new CommandTimeoutException("ublk " + UblkCmd.controlName(nr) + " got no answer from the kernel within " + limit.toMillis() + " ms"
                    + (progress == null ? "" : " without I/O on the queues"));
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted waiting for ublk " + UblkCmd.controlName(nr));
        }
        catch (ExecutionException e) {
            if (e.getCause() instanceof IOException) {
                throw (IOException) e.getCause();
            }
            throw new IOException("ublk " + UblkCmd.controlName(nr) + " failed: " + e.getCause(), e.getCause());
        }
    }

    /**
     * Waits for {@code result}; a {@code TimeoutException} only once {@code limit} has passed without
     * {@code progress} (when given) changing.
     */
    static <T> T awaitWhileProgressing(Future<T> result, Duration limit, LongSupplier progress)
            throws InterruptedException, ExecutionException, TimeoutException
    {
        long seen = progress == null ? 0 : progress.getAsLong();
        while (true) {
            try {
                return result.get(limit.toMillis(), TimeUnit.MILLISECONDS);
            }
            catch (TimeoutException e) {
                if (progress == null) {
                    throw e;
                }
                long now = progress.getAsLong();
                if (now == seen) {
                    throw e;
                }
                seen = now;
            }
        }
    }

    static final class CommandTimeoutException
            extends IOException
    {
        CommandTimeoutException(String message)
        {
            super(message);
        }
    }

    /** Closes the control ring; a command still stuck in the kernel keeps its daemon thread. */
    @Override
    public void close()
    {
        executor.shutdown();
        if (!broken) {
            channel.close();
        }
    }
}
