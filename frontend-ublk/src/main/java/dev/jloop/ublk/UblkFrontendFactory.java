package dev.jloop.ublk;

import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * The {@code ublk} frontend: the kernel's ublk driver makes the one export {@code /dev/ublkbN}.
 * Options: {@link #options()}; any other key is refused, so an option meant for another frontend is
 * never silently ignored. Needs root and {@code ublk_drv} (Linux 6.0+).
 */
public final class UblkFrontendFactory
        implements FrontendFactory
{
    private static final String QUEUES = "queues";
    private static final String QUEUE_DEPTH = "queue-depth";
    private static final String UBLK_ID = "ublk-id";
    private static final String RECOVER = "recover";
    private static final String NO_RECOVERY = "no-recovery";

    @Override
    public String name()
    {
        return "ublk";
    }

    @Override
    public String description()
    {
        return "Linux ublk block device /dev/ublkbN (root, ublk_drv)";
    }

    @Override
    public Frontend create(FrontendConfig config, List<Export> exports)
            throws IOException
    {
        if (exports.size() != 1) {
            throw new IOException("the ublk frontend serves exactly one export, not " + exports.size());
        }
        return UblkServer.start(config(config.options()), exports.get(0).device(), UblkState.directory(), config.origin());
    }

    @Override
    public void validate(FrontendConfig config)
    {
        if (Long.toString(ProcessHandle.current().pid()).equals(System.getenv("LISTEN_PID"))) {
            // a socket handed over by systemd or libnbd that nobody would ever accept on
            throw new IllegalArgumentException("started by socket activation (LISTEN_FDS), but --frontend ublk serves no socket: "
                    + "activate jloop with --frontend nbd, or start it directly");
        }
        try {
            config(config.options());
        }
        catch (IOException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }

    @Override
    public List<PluginOption> options()
    {
        UblkServer.Config defaults = UblkServer.Config.defaults();
        return List.of(
                PluginOption.of(QUEUES, PluginOption.Type.COUNT, Integer.toString(defaults.queues()),
                        "hardware queues, each served by its own thread", "--frontend ublk --queues 2 disk.img"),
                PluginOption.of(QUEUE_DEPTH, PluginOption.Type.COUNT, Integer.toString(defaults.queueDepth()),
                        "requests in flight on each queue", "--frontend ublk --queue-depth 64 disk.img"),
                PluginOption.of(UBLK_ID, PluginOption.Type.COUNT, null,
                        "the device number, giving /dev/ublkbN (default: the kernel picks a free one)", "--frontend ublk --ublk-id 3 disk.img"),
                PluginOption.of(RECOVER, PluginOption.Type.COUNT, null,
                        "take over /dev/ublkbN if it waits for a server (its last one died) and serves these files; create it if there is no device N",
                        "--frontend ublk --recover 0 disk.img"),
                PluginOption.flag(NO_RECOVERY,
                        "create the device without user recovery: when jloop dies the disk goes away at once and its I/O fails",
                        "--frontend ublk --no-recovery disk.img"));
    }

    static UblkServer.Config config(Map<String, String> given)
            throws IOException
    {
        UblkServer.Config defaults = UblkServer.Config.defaults();
        try {
            PluginOptions options = PluginOptions.parse("the ublk frontend", new UblkFrontendFactory().options(), given);
            int devId = options.count(UBLK_ID, defaults.devId());
            int recover = options.count(RECOVER, -1);
            boolean noRecovery = options.flag(NO_RECOVERY);
            if (recover >= 0) {
                if (devId >= 0 && devId != recover) {
                    throw new IllegalArgumentException("--recover " + recover + " and --ublk-id " + devId + " name two devices");
                }
                if (noRecovery) {
                    throw new IllegalArgumentException("--recover and --no-recovery exclude each other");
                }
                devId = recover;
            }
            return new UblkServer.Config(
                    options.count(QUEUES, defaults.queues()),
                    options.count(QUEUE_DEPTH, defaults.queueDepth()),
                    devId,
                    defaults.bufferBytes(),
                    defaults.commandTimeout(),
                    defaults.startTimeout(),
                    !noRecovery,
                    recover >= 0);
        }
        catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
    }
}
