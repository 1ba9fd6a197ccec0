package dev.jloop.dist;

import com.google.inject.CreationException;
import com.google.inject.Guice;
import com.google.inject.ProvisionException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import sun.misc.Signal;

import java.io.IOException;
import java.io.PrintStream;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * The {@code jloop} command. Mistakes the user can fix end with one line on stderr and exit code 1
 * (2 for a malformed command line); SIGTERM and SIGINT stop the server cleanly with exit code 0.
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
        CommandLine commandLine = new CommandLine(new Main())
                .setOut(new java.io.PrintWriter(out, true))
                .setErr(new java.io.PrintWriter(err, true))
                .setExecutionExceptionHandler((e, cmd, parsed) -> {
                    err.println("jloop: " + userMessage(e));
                    return 1;
                });
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
                    "Serves FILE as a block device until SIGTERM or SIGINT.",
                    "",
                    "Examples:",
                    "  Create a sparse 1 GiB image and serve it on nbd://127.0.0.1:10809/:",
                    "    jloop serve --size 1G disk.img",
                    "  Serve on a Unix socket (nbd+unix:///?socket=/tmp/nbd.sock):",
                    "    jloop serve --socket /tmp/nbd.sock disk.img",
                    "  Serve read-only with the synchronous backend, bypassing the page cache:",
                    "    jloop serve --backend sync --read-only --direct disk.img",
                    ""})
    static final class Serve
            implements Callable<Integer>
    {
        @Mixin
        ServeOptions options = new ServeOptions();

        @Override
        public Integer call()
                throws IOException, InterruptedException
        {
            JloopServer server = Guice.createInjector(new ServeModule(options)).getInstance(JloopServer.class);
            CountDownLatch stop = new CountDownLatch(1);
            Signal.handle(new Signal("TERM"), signal -> stop.countDown());
            Signal.handle(new Signal("INT"), signal -> stop.countDown());
            String line = server.start();
            System.out.println(line);
            System.out.flush();
            stop.await();
            server.close();
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
