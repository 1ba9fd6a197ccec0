package dev.jloop.dist;

import dev.jloop.filter.CowOverlay;
import com.google.inject.CreationException;
import com.google.inject.Guice;
import com.google.inject.ProvisionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import sun.misc.Signal;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * The {@code jloop} command. Mistakes the user can fix end with one line on stderr and exit code 1
 * (2 for a malformed command line); SIGTERM and SIGINT stop the server cleanly with exit code 0, and a
 * second one while it stops exits at once.
 * With {@code --run} the exit code is the command's.
 */
@Command(name = "jloop", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Serves a file as a block device from user space.")
public final class Main
{
    /** The subcommands, in the order the help lists them. */
    private static final List<Class<?>> COMMANDS = List.of(Serve.class, StatusCommand.class, Commit.class, ListCommands.Backends.class,
            ListCommands.Frontends.class, ListCommands.Filters.class, UblkCommands.class, CommandLine.HelpCommand.class);

    public static void main(String[] args)
    {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err)
    {
        List<Path> pluginDirectories = PluginFolders.directories(System.getProperty("jloop.home"), System.getenv(PluginFolders.PATH_VARIABLE));
        return run(args, out, err, PluginFolders.load(pluginDirectories, Main.class.getClassLoader()));
    }

    static int run(String[] args, PrintStream out, PrintStream err, PluginFolders folders)
    {
        Plugins plugins;
        try {
            plugins = Plugins.load(folders);
        }
        catch (IllegalStateException e) {
            err.println("jloop: " + e.getMessage());
            return 1;
        }
        folders.checkUsed(List.of(plugins.backends(), plugins.frontends(), plugins.filters()));
        folders.logProblems();
        CommandLine commandLine = new CommandLine(new Main());
        // picocli builds a command's model from its annotations when the command is added, and
        // serving needs serve's alone: the others' cost a server a sixth of its command line's start.
        // Anything else (help, a mistyped command) gets them all.
        boolean serving = args.length > 0 && args[0].equals("serve");
        for (Class<?> command : serving ? List.of(Serve.class) : COMMANDS) {
            commandLine.addSubcommand(command);
        }
        // after the subcommands: picocli gives these settings to the subcommands it has at the time
        commandLine.setOut(new java.io.PrintWriter(out, true))
                .setErr(new java.io.PrintWriter(err, true))
                .setExecutionExceptionHandler((e, cmd, parsed) -> {
                    err.println("jloop: " + userMessage(e));
                    return 1;
                });
        // The plugins' own options join serve's before anything is parsed, help included.
        CommandLine serve = commandLine.getSubcommands().get("serve");
        Serve command = serve.getCommand();
        command.plugins = plugins;
        command.pluginCli = new PluginCli(serve.getCommandSpec(), plugins);
        if (!serving) {
            ((ListCommands.Backends) commandLine.getSubcommands().get("backends").getCommand()).plugins = plugins;
            ((ListCommands.Frontends) commandLine.getSubcommands().get("frontends").getCommand()).plugins = plugins;
            ((ListCommands.Filters) commandLine.getSubcommands().get("filters").getCommand()).plugins = plugins;
        }
        return commandLine.execute(args);
    }

    static String userMessage(Throwable e)
    {
        Throwable t = e;
        while (t != null) {
            if (t instanceof UserException) {
                return t.getMessage();
            }
            if (t instanceof ProvisionException && !((ProvisionException) t).getErrorMessages().isEmpty()) {
                Throwable cause = ((ProvisionException) t).getErrorMessages().iterator().next().getCause();
                if (cause != null && cause != t) {
                    t = cause;
                    continue;
                }
            }
            if (t instanceof CreationException && !((CreationException) t).getErrorMessages().isEmpty()) {
                Throwable cause = ((CreationException) t).getErrorMessages().iterator().next().getCause();
                if (cause != null && cause != t) {
                    t = cause;
                    continue;
                }
            }
            t = t.getCause();
        }
        return e.toString();
    }

    @Command(name = "serve", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Serves FILE (and the files of --export NAME=FILE) as block devices until SIGTERM or SIGINT; "
                            + "with --run until the command ends, with --stdio until the client leaves.",
                    "",
                    "Examples:",
                    "  Create a sparse 1 GiB image and serve it on nbd://127.0.0.1:10809/:",
                    "    jloop serve --size 1G disk.img",
                    "  Serve on a Unix socket (nbd+unix:///?socket=/tmp/nbd.sock):",
                    "    jloop serve --socket /tmp/nbd.sock disk.img",
                    "  Serve read-only with the synchronous backend, bypassing the page cache:",
                    "    jloop serve --backend sync --read-only --direct disk.img",
                    "  Two exports, the second read-only (nbdinfo --list nbd://127.0.0.1/):",
                    "    jloop serve --export disk disk.img --export 'iso=boot.iso,read-only'",
                    "  TLS required, certificates as qemu and nbdkit keep them (nbds://...):",
                    "    jloop serve --tls require --tls-certificates /etc/pki/jloop disk.img",
                    "  Copy an image out through a private socket, then stop:",
                    "    jloop serve --run 'nbdcopy \"$uri\" copy.img' disk.img",
                    "  One client on standard input/output:",
                    "    nbdinfo -- [ jloop serve --stdio disk.img ]",
                    ""})
    static final class Serve
            implements Callable<Integer>
    {
        private static final Logger log = LoggerFactory.getLogger(Serve.class);

        @Spec
        CommandLine.Model.CommandSpec spec;
        @Mixin
        ServeOptions options = new ServeOptions();
        Plugins plugins;
        PluginCli pluginCli;

        @Override
        public Integer call()
                throws IOException, InterruptedException
        {
            List<String> given = spec.commandLine().getParseResult().originalArgs();
            options.arguments = List.copyOf(given.subList(given.indexOf("serve") + 1, given.size()));
            JloopServer server = Guice.createInjector(ServeModule.withPlugins(options, pluginCli, plugins)).getInstance(JloopServer.class);
            CountDownLatch stop = new CountDownLatch(1);
            Signal.handle(new Signal("TERM"), signal -> stopOrExit(stop, signal));
            Signal.handle(new Signal("INT"), signal -> stopOrExit(stop, signal));
            String line = server.start();
            if (server.usesStandardStreams()) {
                // standard output belongs to the client: report on standard error, and keep stray prints there too
                System.setOut(System.err);
                log.info("{}", line);
            }
            else if (options.run == null) {
                System.out.println(line);
                System.out.flush();
            }
            else {
                log.info("{}", line);
            }
            // a frontend may end on its own (the one client of --stdio has gone)
            stopAfter("jloop-frontend-end", server::awaitEnd, stop);
            try {
                return options.run != null ? run(server, stop) : serve(stop);
            }
            finally {
                server.close();
            }
        }

        /** Stops the server once {@code wait} returns, from a daemon thread of its own. */
        private static void stopAfter(String name, Waiting wait, CountDownLatch stop)
        {
            Thread thread = new Thread(() -> {
                try {
                    wait.await();
                }
                catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                stop.countDown();
            }, name);
            thread.setDaemon(true);
            thread.start();
        }

        private interface Waiting
        {
            void await()
                    throws InterruptedException;
        }

        private static int serve(CountDownLatch stop)
                throws InterruptedException
        {
            stop.await();
            return 0;
        }

        /**
         * The first SIGTERM or SIGINT stops the server cleanly; a second one while it stops (Ctrl-C twice)
         * exits at once with 128 + the signal's number. That loses nothing a client was promised: a write
         * is acknowledged only after the file took it, and durable only after a flush or FUA that was
         * acknowledged too; requests not yet answered were never promised.
         */
        private static void stopOrExit(CountDownLatch stop, Signal signal)
        {
            if (stop.getCount() > 0) {
                stop.countDown();
                return;
            }
            System.err.println("jloop: SIG" + signal.getName() + " again while stopping: exiting now; "
                    + "requests not yet answered are dropped, every acknowledged write is in the file");
            System.err.flush();
            Runtime.getRuntime().halt(128 + signal.getNumber());
        }

        /** As nbdkit's --run: the command's status is jloop's; the caller closes the server either way. */
        private int run(JloopServer server, CountDownLatch stop)
                throws InterruptedException
        {
            ProcessBuilder builder = new ProcessBuilder("sh", "-c", options.run).inheritIO();
            Map<String, String> environment = builder.environment();
            // the socket-activation variables were jloop's, not the command's
            environment.remove("LISTEN_PID");
            environment.remove("LISTEN_FDS");
            environment.putAll(server.environment());
            Process command;
            try {
                command = builder.start();
            }
            catch (IOException e) {
                throw new UserException("cannot run sh -c '" + options.run + "': " + e.getMessage(), e);
            }
            stopAfter("jloop-run", command::waitFor, stop);
            stop.await();
            if (command.isAlive()) {
                log.info("stopping the --run command");
                command.destroy();
            }
            int status = command.waitFor();
            if (status != 0) {
                log.info("--run command exited with status {}", status);
            }
            return status;
        }
    }

    @Command(name = "commit", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
            description = {
                    "Writes the changes kept in a cow overlay into BASE, the regular file it was made over, makes them durable "
                            + "and removes the overlay (OVERLAY and OVERLAY.map). A commit cut off by a crash keeps the overlay: run it again.",
                    "",
                    "Example:",
                    "  Serve base.img, keeping every change in base.overlay; stop; then write the changes into base.img:",
                    "    jloop serve --filter cow --cow-file base.overlay base.img",
                    "    jloop commit --cow-file base.overlay base.img",
                    ""})
    static final class Commit
            implements Callable<Integer>
    {
        @Spec
        CommandLine.Model.CommandSpec spec;

        @Option(names = "--cow-file", required = true, paramLabel = "OVERLAY", description = "the overlay, as given to serve's --cow-file")
        Path overlay;

        @Parameters(paramLabel = "BASE", description = "the file the overlay was made over")
        Path base;

        @Override
        public Integer call()
        {
            long blocks;
            try {
                blocks = CowOverlay.commit(overlay, base);
            }
            catch (IOException e) {
                throw new UserException("cannot commit " + overlay + " into " + base + ": " + e.getMessage(), e);
            }
            spec.commandLine().getOut().println("jloop: committed " + blocks + " block" + (blocks == 1 ? "" : "s") + " of " + overlay
                    + " into " + base + "; the overlay is removed");
            return 0;
        }
    }

    static final class Version
            implements CommandLine.IVersionProvider
    {
        @Override
        public String[] getVersion()
        {
            String version = Main.class.getPackage().getImplementationVersion();
            return new String[] {"jloop " + (version == null ? "(development build)" : version)
                    + " on Java " + System.getProperty("java.version")};
        }
    }
}
