package dev.jloop.dist;

import com.google.inject.CreationException;
import com.google.inject.Guice;
import com.google.inject.ProvisionException;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import sun.misc.Signal;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code jloop} command. Mistakes the user can fix end with one line on stderr and exit code 1
 * (2 for a malformed command line); SIGTERM and SIGINT stop the server cleanly with exit code 0, and a
 * second one while it stops exits at once.
 * With {@code --run} the exit code is the command's.
 */
@Command(name = "jloop", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Serves a file as a block device from user space.",
        subcommands = {Main.Serve.class, CommandLine.HelpCommand.class})
public final class Main
{
    public static void main(String[] args)
    {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err)
    {
        Registry<BackendFactory> backends;
        Registry<FrontendFactory> frontends;
        try {
            backends = Registry.load("backend", BackendFactory.class, BackendFactory::name);
            frontends = Registry.load("frontend", FrontendFactory.class, FrontendFactory::name);
        }
        catch (IllegalStateException e) {
            err.println("jloop: " + e.getMessage());
            return 1;
        }
        CommandLine commandLine = new CommandLine(new Main())
                .setOut(new java.io.PrintWriter(out, true))
                .setErr(new java.io.PrintWriter(err, true))
                .setExecutionExceptionHandler((e, cmd, parsed) -> {
                    err.println("jloop: " + userMessage(e));
                    return 1;
                });
        // The plugins' own options join serve's before anything is parsed, help included.
        CommandLine serve = commandLine.getSubcommands().get("serve");
        Serve command = serve.getCommand();
        command.backends = backends;
        command.frontends = frontends;
        command.pluginCli = new PluginCli(serve.getCommandSpec(), backends, frontends);
        return commandLine.execute(args);
    }

    private static String userMessage(Throwable e)
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
        private static final Pattern TCP_URI = Pattern.compile("nbds?://(\\[[^]]*]|[^:/]*):(\\d+)/.*");

        @Mixin
        ServeOptions options = new ServeOptions();
        Registry<BackendFactory> backends;
        Registry<FrontendFactory> frontends;
        PluginCli pluginCli;

        @Override
        public Integer call()
                throws IOException, InterruptedException
        {
            if (options.stdio && options.run != null) {
                throw new UserException("--stdio and --run exclude each other: --stdio serves the client that started jloop");
            }
            if (options.stdio && (options.socket != null || options.listen != null)) {
                throw new UserException("--stdio serves on standard input/output: drop --socket and --listen");
            }
            boolean activated = socketActivated();
            if (activated && (options.socket != null || options.listen != null || options.run != null)) {
                throw new UserException("started by socket activation (LISTEN_FDS): it gives the socket, so --socket, --listen and --run do not apply");
            }
            if (activated && options.frontend.equals("ublk")) {
                throw new UserException("started by socket activation (LISTEN_FDS), but --frontend ublk serves no socket: "
                        + "activate jloop with --frontend nbd, or start it directly");
            }
            JloopServer server = Guice.createInjector(new ServeModule(options, backends, frontends, pluginCli)).getInstance(JloopServer.class);
            CountDownLatch stop = new CountDownLatch(1);
            Signal.handle(new Signal("TERM"), signal -> stopOrExit(stop, signal));
            Signal.handle(new Signal("INT"), signal -> stopOrExit(stop, signal));
            if (options.stdio || activated) {
                return serveStdio(server, stop, activated);
            }
            if (options.run != null) {
                return run(server, stop);
            }
            String line = server.start();
            System.out.println(line);
            System.out.flush();
            stop.await();
            server.close();
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

        /**
         * --stdio, socket activation, or both (one client accepted on the activation socket). Standard
         * output is the NBD stream, or the activating client's own output: nothing may print there.
         */
        private int serveStdio(JloopServer server, CountDownLatch stop, boolean activated)
                throws IOException, InterruptedException
        {
            System.setOut(System.err);
            Map<String, String> mode = new LinkedHashMap<>();
            mode.put("stdio", Boolean.toString(options.stdio));
            mode.put("socket-activation", Boolean.toString(activated));
            String line = server.start(new FrontendConfig("127.0.0.1", 0, null, Map.of()), mode);
            log.info("{}", line);
            Thread waiter = new Thread(() -> {
                try {
                    server.awaitEnd();
                }
                catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                stop.countDown();
            }, "jloop-stdio");
            waiter.setDaemon(true);
            waiter.start();
            stop.await();
            server.close();
            return 0;
        }

        /** Whether LISTEN_PID and LISTEN_FDS name this process (bin/jloop has moved the socket to descriptor 0). */
        private static boolean socketActivated()
        {
            String pid = System.getenv("LISTEN_PID");
            String fds = System.getenv("LISTEN_FDS");
            if (pid == null || fds == null || !pid.trim().equals(Long.toString(ProcessHandle.current().pid()))) {
                return false;
            }
            if (!fds.trim().equals("1")) {
                log.warn("socket activation passed LISTEN_FDS={} sockets; serving on the first only", fds);
            }
            return true;
        }

        /** As nbdkit's --run: the command's status is jloop's; the server is closed cleanly either way. */
        private int run(JloopServer server, CountDownLatch stop)
                throws IOException, InterruptedException
        {
            Path privateDirectory = null;
            FrontendConfig where;
            if (options.socket == null && options.listen == null) {
                // createTempDirectory makes it mode 0700: only this user can reach the socket.
                privateDirectory = Files.createTempDirectory("jloop-run-");
                where = new FrontendConfig("127.0.0.1", 0, privateDirectory.resolve("nbd.sock"), Map.of());
            }
            else {
                where = server.listenConfig();
            }
            try {
                String line = server.start(where, Map.of());
                log.info("{}", line);
                String uri = server.uri();
                if (options.tls.equals("require")) {
                    uri = "nbds" + uri.substring("nbd".length());
                }
                ProcessBuilder builder = new ProcessBuilder("sh", "-c", options.run).inheritIO();
                Map<String, String> environment = builder.environment();
                environment.remove("LISTEN_PID");
                environment.remove("LISTEN_FDS");
                environment.put("uri", uri);
                environment.put("exportname", server.firstExportName());
                environment.put("tls", Integer.toString(List.of("off", "on", "require").indexOf(options.tls)));
                if (where.socket().isPresent()) {
                    environment.put("unixsocket", where.socket().get().toAbsolutePath().toString());
                    environment.remove("port");
                }
                else {
                    Matcher matcher = TCP_URI.matcher(server.uri());
                    environment.put("port", matcher.matches() ? matcher.group(2) : Integer.toString(where.port()));
                    environment.remove("unixsocket");
                }
                Process command;
                try {
                    command = builder.start();
                }
                catch (IOException e) {
                    throw new UserException("cannot run sh -c '" + options.run + "': " + e.getMessage(), e);
                }
                Thread waiter = new Thread(() -> {
                    try {
                        command.waitFor();
                    }
                    catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    stop.countDown();
                }, "jloop-run");
                waiter.setDaemon(true);
                waiter.start();
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
            finally {
                server.close();
                if (privateDirectory != null) {
                    Files.deleteIfExists(privateDirectory.resolve("nbd.sock"));
                    Files.deleteIfExists(privateDirectory);
                }
            }
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
