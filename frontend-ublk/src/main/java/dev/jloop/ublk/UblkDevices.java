package dev.jloop.ublk;

import dev.jloop.posix.Errors;

import java.io.Closeable;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

import static java.util.Objects.requireNonNull;

/**
 * The ublk devices of this machine as {@code jloop ublk list}, {@code del} and {@code recover} see
 * them: what the kernel says of each (GET_DEV_INFO: state, serving pid, queues) next to what its
 * state file says it serves. Every failure a user can act on is an {@link IOException} of one line.
 */
public final class UblkDevices
        implements Closeable
{
    private static final Path SYSFS = Path.of("/sys/class/ublk-char");
    /** How long a recovery waits for the kernel to let go of a server that has just died. */
    private static final Duration RECOVERY_WAIT = Duration.ofSeconds(30);

    private final UblkControl control;
    private final Path stateDirectory;

    /** One device: the kernel's view and, when jloop made it, its state file ({@code null} otherwise). */
    public record Device(int id, int state, int pid, int queues, int queueDepth, long flags, UblkState recorded)
    {
        public boolean live()
        {
            return state == UblkCmd.DEV_LIVE;
        }

        public boolean waitingForServer()
        {
            return state == UblkCmd.DEV_QUIESCED;
        }

        /** {@code live}, {@code quiesced, no server}, {@code dead}... */
        public String stateText()
        {
            return waitingForServer() ? "quiesced, no server" : UblkCmd.stateName(state);
        }
    }

    UblkDevices(UblkDriver driver, Path stateDirectory, Duration timeout)
            throws IOException
    {
        this.control = new UblkControl(requireNonNull(driver, "driver is null").openControl(), timeout);
        this.stateDirectory = requireNonNull(stateDirectory, "stateDirectory is null");
        control.getFeatures();
    }

    /** Through {@code /dev/ublk-control}, with the state files of {@link UblkState#directory()}. */
    public static UblkDevices open()
            throws IOException
    {
        if (Files.notExists(Path.of(UringUblkDriver.CONTROL_PATH))) {
            throw new IOException(UringUblkDriver.CONTROL_PATH + " does not exist: the ublk_drv kernel module is not loaded (modprobe ublk_drv)");
        }
        try {
            return new UblkDevices(new UringUblkDriver(), UblkState.directory(), Duration.ofSeconds(10));
        }
        catch (UblkException e) {
            if (e.errno() == Errors.EACCES || e.errno() == Errors.EPERM) {
                throw new IOException("open " + UringUblkDriver.CONTROL_PATH + " failed: " + Errors.name(-e.errno()) + "; ublk needs root (CAP_SYS_ADMIN)", e);
            }
            throw e;
        }
    }

    /** Every device the kernel has ({@code /sys/class/ublk-char/ublkcN}), and every one a state file names. */
    public List<Device> list()
            throws IOException
    {
        TreeSet<Integer> ids = new TreeSet<>();
        ids.addAll(numbered(SYSFS, "ublkc"));
        ids.addAll(numbered(stateDirectory, ""));
        List<Device> devices = new ArrayList<>();
        for (int id : ids) {
            Device device = device(id);
            if (device != null) {
                devices.add(device);
            }
        }
        return devices;
    }

    private static List<Integer> numbered(Path directory, String prefix)
            throws IOException
    {
        List<Integer> ids = new ArrayList<>();
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(directory)) {
            for (Path entry : entries) {
                String name = entry.getFileName().toString();
                if (name.startsWith(prefix) && name.length() > prefix.length() && name.substring(prefix.length()).chars().allMatch(Character::isDigit)) {
                    ids.add(Integer.parseInt(name.substring(prefix.length())));
                }
            }
        }
        catch (NoSuchFileException e) {
            // no device, or no state file, yet
        }
        return ids;
    }

    /** Device {@code id}, or {@code null} when the kernel has none (a state file left behind is then removed). */
    public Device device(int id)
            throws IOException
    {
        UblkStructs.DevInfo info = control.getDeviceInfo(id);
        if (info == null) {
            // a state file outlived its device (the machine did not reboot, the device was deleted by another tool)
            UblkState.delete(stateDirectory, id);
            return null;
        }
        UblkState recorded;
        try {
            recorded = UblkState.read(stateDirectory, id);
        }
        catch (IOException e) {
            recorded = null;
        }
        return new Device(id, info.state(), info.ublksrvPid(), info.nrHwQueues(), info.queueDepth(), info.flags(), recorded);
    }

    /**
     * Checks that device {@code id} can be taken over by a new server and returns its state file:
     * the device exists and waits for a server, the process that served it is gone, and its state
     * file is there and matches the kernel's queues.
     */
    public UblkState recoverable(int id)
            throws IOException
    {
        UblkState state = waitingForServer(control, stateDirectory, id, control.getDeviceInfo(id), RECOVERY_WAIT).state();
        if (alive(state.pid())) {
            throw new IOException("ublk device " + id + " waits for a server, but pid " + state.pid() + ", which served it, is still running: "
                    + "stop it first");
        }
        return state;
    }

    /**
     * The checks every recovery makes, on {@code info} as GET_DEV_INFO gave it: after a wait while the
     * kernel still tears down a server that has just died ({@link #awaitServerGone}), device {@code id}
     * exists, waits for a server (QUIESCED), and has a state file that records the kernel's queues.
     * Returns the device and its state file; each failure is one line for the user.
     */
    static Waiting waitingForServer(UblkControl control, Path stateDirectory, int id, UblkStructs.DevInfo info, Duration wait)
            throws IOException
    {
        info = awaitServerGone(control, info, wait);
        if (info == null) {
            UblkState.delete(stateDirectory, id);
            throw new IOException("there is no ublk device " + id + " to recover (jloop ublk list shows the devices)");
        }
        if (info.state() == UblkCmd.DEV_LIVE) {
            throw new IOException("ublk device " + id + " is live, served by pid " + info.ublksrvPid() + ": there is nothing to recover");
        }
        if (info.state() != UblkCmd.DEV_QUIESCED) {
            String why = UblkCmd.stateName(info.state()) + ((info.flags() & UblkCmd.F_USER_RECOVERY) == 0 ? ", made without user recovery" : "");
            throw new IOException("ublk device " + id + " is not waiting for a server (" + why + "); delete it with jloop ublk del " + id);
        }
        UblkState state = UblkState.read(stateDirectory, id);
        if (state == null) {
            throw new IOException("ublk device " + id + " has no state file " + UblkState.path(stateDirectory, id)
                    + ": jloop did not make it, or it was removed; delete the device with jloop ublk del " + id);
        }
        if (state.queues() != info.nrHwQueues() || state.queueDepth() != info.queueDepth()) {
            throw new IOException("ublk device " + id + " does not match its state file " + UblkState.path(stateDirectory, id) + ": it records "
                    + state.queues() + " queue(s) of depth " + state.queueDepth() + ", the kernel has " + info.nrHwQueues() + " of depth " + info.queueDepth());
        }
        return new Waiting(info, state);
    }

    /** A device that waits for a server, and its state file. */
    record Waiting(UblkStructs.DevInfo info, UblkState state) {}

    /**
     * A device that is still live although the process that served it is gone (the kernel notices a
     * killed server as its rings are torn down, shortly after the process ended): waits up to
     * {@code limit} for it to become QUIESCED (or anything else). Returns the device as it is then,
     * {@code null} if it is gone.
     */
    static UblkStructs.DevInfo awaitServerGone(UblkControl control, UblkStructs.DevInfo info, Duration limit)
            throws IOException
    {
        long deadline = System.nanoTime() + limit.toNanos();
        while (info != null && info.state() == UblkCmd.DEV_LIVE && !alive(info.ublksrvPid()) && System.nanoTime() < deadline) {
            pause();
            info = control.getDeviceInfo(info.devId());
        }
        return info;
    }

    static boolean alive(long pid)
    {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    static void pause()
            throws IOException
    {
        try {
            Thread.sleep(200);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while waiting for the kernel to let go of a dead ublk server");
        }
    }

    /**
     * Deletes device {@code id}, which no server serves: STOP_DEV fails the I/O waiting on it (a
     * quiesced device's requests end with an error instead of waiting for ever), DEL_DEV frees the id,
     * and its state file goes. A device a live process serves is refused: stopping that server deletes it.
     */
    public void delete(int id)
            throws IOException
    {
        UblkStructs.DevInfo info = control.getDeviceInfo(id);
        if (info == null) {
            UblkState.delete(stateDirectory, id);
            throw new IOException("there is no ublk device " + id);
        }
        if (info.state() == UblkCmd.DEV_LIVE && alive(info.ublksrvPid())) {
            throw new IOException("ublk device " + id + " is served by pid " + info.ublksrvPid() + ": stop that server (kill -TERM "
                    + info.ublksrvPid() + "), which deletes the device");
        }
        control.stopDevice(id, () -> 0);
        control.deleteDevice(id, Duration.ofSeconds(10));
        UblkState.delete(stateDirectory, id);
    }

    @Override
    public void close()
    {
        control.close();
    }
}
