package dev.jloop.dist;

import dev.jloop.ublk.UblkDevices;
import dev.jloop.ublk.UblkState;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code jloop ublk list|del|recover}: the ublk devices of this machine, as ublksrv's {@code ublk
 * list}, {@code ublk del} and {@code ublk recover}. A device made by {@code jloop serve --frontend
 * ublk} outlives a server that dies unexpectedly (user recovery): it waits, with its I/O, until
 * {@code jloop ublk recover N} serves it again or {@code jloop ublk del N} deletes it.
 */
@Command(name = "ublk", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = {
                "The ublk devices of this machine (root, ublk_drv): list them, delete one, or serve one again whose server died.",
                "",
                "A device made by jloop serve --frontend ublk waits for a new server when jloop dies unexpectedly (SIGKILL, "
                        + "a crash): its I/O blocks until jloop ublk recover N serves it again, or fails once jloop ublk del N "
                        + "deletes it. What each device serves is recorded in " + UblkState.DEFAULT_DIRECTORY + "/N.",
                ""},
        subcommands = {UblkCommands.ListDevices.class, UblkCommands.Delete.class, UblkCommands.Recover.class})
final class UblkCommands
        implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Override
    public Integer call()
    {
        spec.commandLine().usage(spec.commandLine().getOut());
        return 0;
    }

    private static UblkDevices open()
    {
        try {
            return UblkDevices.open();
        }
        catch (IOException e) {
            throw new UserException(e.getMessage(), e);
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {"Lists the ublk devices: state, serving process, queues x depth, and, for jloop's, backend and files.", ""})
    static final class ListDevices
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;

        @Override
        public Integer call()
        {
            PrintWriter out = spec.commandLine().getOut();
            try (UblkDevices devices = open()) {
                List<UblkDevices.Device> all = devices.list();
                if (all.isEmpty()) {
                    out.println("no ublk devices");
                    out.flush();
                    return 0;
                }
                String format = "%-13s %-20s %-8s %-8s %-9s %s%n";
                out.printf(format, "DEVICE", "STATE", "PID", "QUEUES", "BACKEND", "FILE");
                for (UblkDevices.Device device : all) {
                    UblkState recorded = device.recorded();
                    out.printf(format, "/dev/ublkb" + device.id(), device.stateText(), device.live() ? Integer.toString(device.pid()) : "-",
                            device.queues() + "x" + device.queueDepth(),
                            recorded == null || recorded.backend().isEmpty() ? "-" : recorded.backend(),
                            recorded == null ? "(no state file: not jloop's)" : String.join(", ", recorded.files().split("\n")));
                }
            }
            catch (IOException e) {
                throw new UserException("cannot list the ublk devices: " + e.getMessage(), e);
            }
            out.flush();
            return 0;
        }
    }

    @Command(name = "del", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {"Deletes ublk device N, which no server serves: the I/O waiting on it fails, the id is free again. "
                    + "A device a live jloop serves is refused: stop that jloop (SIGTERM), which deletes it.", ""})
    static final class Delete
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;

        @Parameters(paramLabel = "N", description = "the device number, as in /dev/ublkbN")
        int id;

        @Override
        public Integer call()
        {
            try (UblkDevices devices = open()) {
                devices.delete(id);
            }
            catch (IOException e) {
                throw new UserException(e.getMessage(), e);
            }
            spec.commandLine().getOut().println("jloop: deleted /dev/ublkb" + id);
            return 0;
        }
    }

    @Command(name = "recover", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Serves ublk device N again after its server died: the files, backend and options recorded in "
                            + UblkState.DEFAULT_DIRECTORY + "/N, as jloop serve --recover N with them would. The device must be "
                            + "waiting for a server; requests in flight at the death are issued again, the file system on it sees a pause. "
                            + "Runs until SIGTERM, which deletes the device as jloop serve does.",
                    "",
                    "Example, after kill -9 of the jloop serving /dev/ublkb0:",
                    "  jloop ublk list            # /dev/ublkb0  quiesced, no server ...",
                    "  jloop ublk recover 0",
                    "  jloop ublk recover --backend nio 0    # the same files through another backend",
                    ""})
    static final class Recover
            implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;

        @Parameters(paramLabel = "N", description = "the device number, as in /dev/ublkbN")
        int id;

        @Option(names = "--backend", paramLabel = "NAME[:KEY=VALUE,...]",
                description = "serve through this backend instead of the recorded one (an upgrade, or another backend for the same file)")
        String backend;

        @Override
        public Integer call()
        {
            UblkState state;
            try (UblkDevices devices = open()) {
                state = devices.recoverable(id);
            }
            catch (IOException e) {
                throw new UserException("cannot recover /dev/ublkb" + id + ": " + e.getMessage(), e);
            }
            List<String> args = new ArrayList<>(List.of("serve"));
            args.addAll(serveArguments(state.origin().getOrDefault("arguments", ""), backend));
            args.add("--recover");
            args.add(Integer.toString(id));
            // the serve command of this very command line, with the plugins it was given
            CommandLine root = spec.root().commandLine();
            return root.execute(args.toArray(String[]::new));
        }

        /**
         * The recorded arguments of {@code jloop serve} (one per line), without an earlier
         * {@code --recover N}, and with {@code backend} in place of the recorded {@code --backend} when given.
         */
        static List<String> serveArguments(String recorded, String backend)
        {
            List<String> args = new ArrayList<>();
            List<String> given = recorded.isEmpty() ? List.of() : List.of(recorded.split("\n", -1));
            for (int i = 0; i < given.size(); i++) {
                String arg = given.get(i);
                boolean dropped = arg.equals("--recover") || (backend != null && arg.equals("--backend"));
                if (dropped) {
                    i++;
                    continue;
                }
                if (arg.startsWith("--recover=") || (backend != null && arg.startsWith("--backend="))) {
                    continue;
                }
                args.add(arg);
            }
            if (backend != null) {
                args.add(0, "--backend");
                args.add(1, backend);
            }
            return args;
        }
    }
}
