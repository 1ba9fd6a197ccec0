package dev.jloop.dist;

import com.google.inject.CreationException;
import com.google.inject.Guice;
import com.google.inject.ProvisionException;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How serve is put together: plugins by name, their options, the create hook, swapping a plugin. */
class TestServeModule
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private final RecordingBackend backend = new RecordingBackend("fake");
    private final FakeFrontend frontend = new FakeFrontend();

    /** A server of {@code args}, its plugins from {@code backends} and {@code frontends}, as {@code jloop serve} builds it. */
    static JloopServer server(Collection<BackendFactory> backends, Collection<FrontendFactory> frontends, String... args)
    {
        return server(plugins(backends, frontends, List.of()), args);
    }

    static JloopServer server(Plugins plugins, String... args)
    {
        ServeOptions options = new ServeOptions();
        CommandLine commandLine = new CommandLine(options);
        PluginCli pluginCli = new PluginCli(commandLine.getCommandSpec(), plugins);
        commandLine.parseArgs(args);
        return Guice.createInjector(ServeModule.withPlugins(options, pluginCli, plugins)).getInstance(JloopServer.class);
    }

    static Plugins plugins(Collection<BackendFactory> backends, Collection<FrontendFactory> frontends, Collection<FilterFactory> filters)
    {
        return new Plugins(new Registry<>("backend", backends, BackendFactory::name), new Registry<>("frontend", frontends, FrontendFactory::name),
                new Registry<>("filter", filters, FilterFactory::name));
    }

    @Test
    void aFakeTakesAPluginsPlaceByItsModuleAndTwoOfOneNameAreRefused()
            throws IOException
    {
        RecordingBackend fakeSync = new RecordingBackend("sync");
        JloopServer server = server(List.of(fakeSync), List.of(frontend), "--backend", "sync", "--frontend", "fake", "--size", "64K", dir.resolve("a.img").toString());
        server.start();
        server.close();
        assertEquals(1, fakeSync.opened.size(), "--backend sync is whatever module binds the name");

        ServeOptions options = new ServeOptions();
        PluginCli pluginCli = new PluginCli(new CommandLine(options).getCommandSpec(), plugins(List.of(), List.of(), List.of()));
        CreationException twice = assertThrows(CreationException.class, () -> Guice.createInjector(new ServeModule(options, pluginCli),
                PluginModule.backend(fakeSync), PluginModule.backend(new RecordingBackend("sync")), PluginModule.frontend(frontend)));
        assertTrue(twice.getMessage().contains("Duplicate key \"sync\""), twice.getMessage());
    }

    @Test
    void optionsAfterThePluginNameGoToThatPlugin()
            throws IOException
    {
        JloopServer server = server(List.of(backend), List.of(frontend), "--backend", "fake:key=a,,b,level=3", "--frontend", "fake:greeting=hi",
                "--size", "64K", dir.resolve("a.img").toString());
        server.start();
        server.close();
        assertEquals(Map.of("key", "a,b", "level", "3"), backend.opened.get(0).options(), ",, is a comma in a value");
        assertEquals(Map.of("greeting", "hi"), frontend.configs.get(0).options());

        JloopServer flags = server(List.of(backend), List.of(frontend), "--backend", "fake", "--frontend", "fake", "--key", "k", "--level", "4",
                "--size", "64K", dir.resolve("b.img").toString());
        flags.start();
        flags.close();
        assertEquals(Map.of("key", "k", "level", "4"), backend.opened.get(1).options(), "the same options as --KEY");
    }

    @Test
    void pluginOptionMistakesAreRefusedBeforeAnyFileIsCreated()
    {
        String image = dir.resolve("a.img").toString();
        assertMistake("the fake backend takes no option 'colour'; it takes: key, level",
                "--backend", "fake:colour=red", "--frontend", "fake", "--size", "64K", image);
        assertMistake("--level: bad number 'many': expected a whole number, 0 or more (e.g. --level 2)",
                "--backend", "fake:level=many", "--frontend", "fake", "--size", "64K", image);
        assertMistake("key is given twice, as --key and after fake:",
                "--backend", "fake:key=a", "--key", "b", "--frontend", "fake", "--size", "64K", image);
        assertMistake("--backend auto takes no options: name the backend they are for, e.g. --backend io_uring:uring-sqpoll",
                "--backend", "auto:level=1", "--frontend", "fake", "--size", "64K", image);
        assertMistake("unknown backend 'nope'; known backends: fake", "--backend", "nope", "--frontend", "fake", "--size", "64K", image);
        assertMistake("bad --backend 'Fake!': expected NAME[:KEY=VALUE,...], e.g. io_uring or io_uring:uring-sqpoll",
                "--backend", "Fake!", "--frontend", "fake", "--size", "64K", image);
        assertMistake("--export second: colour is an option of none of the chosen backend and filters (key, level)",
                "--backend", "fake", "--frontend", "fake", "--export", "first=" + dir.resolve("first.img") + ",size=64K",
                "--export", "second=" + dir.resolve("second.img") + ",size=64K,colour=red");
        assertFalse(Files.exists(Path.of(image)) || Files.exists(dir.resolve("first.img")) || Files.exists(dir.resolve("second.img")),
                "nothing is created when an option is wrong");
        assertEquals(List.of(), backend.opened);
    }

    @Test
    void eachExportTakesItsOwnBackendOptions()
            throws IOException
    {
        JloopServer server = server(List.of(backend), List.of(frontend), "--backend", "fake:key=shared", "--frontend", "fake",
                "--export", "a=" + dir.resolve("a.img") + ",size=64K", "--export", "b=" + dir.resolve("b.img") + ",size=64K,level=9,key=own");
        server.start();
        server.close();
        assertEquals(Map.of("key", "shared"), backend.opened.get(0).options());
        assertEquals(Map.of("key", "own", "level", "9"), backend.opened.get(1).options(), "the export's own options win");
    }

    @Test
    void sizeCreatesTheImageThroughTheBackend()
            throws IOException
    {
        Path image = dir.resolve("a.img");
        JloopServer server = server(List.of(backend), List.of(frontend), "--backend", "fake", "--frontend", "fake", "--size", "64K", image.toString());
        server.start();
        server.close();
        assertEquals(List.of(image + " 65536"), backend.created);
        assertArrayEquals(RecordingBackend.MARK, Files.readAllBytes(image), "the backend's create made the file");

        Files.write(image, new byte[128 << 10]);
        JloopServer larger = server(List.of(backend), List.of(frontend), "--backend", "fake", "--frontend", "fake", "--size", "64K", image.toString());
        larger.start();
        larger.close();
        assertEquals(1, backend.created.size(), "a file larger than --size is served whole, not created again");
    }

    @Test
    void theLifecycleClosesInReverseOrderAndStopsAtAComponentThatStillServes()
    {
        List<String> closed = new ArrayList<>();
        Lifecycle lifecycle = new Lifecycle();
        lifecycle.started(() -> closed.add("file"));
        lifecycle.started(() -> {
            closed.add("frontend");
            throw new IOException("frontend failed");
        });
        lifecycle.started(() -> {
            closed.add("last");
            throw new IllegalStateException("last failed");
        });
        IOException failure = assertThrows(IOException.class, lifecycle::close);
        assertEquals(List.of("last", "frontend", "file"), closed);
        assertTrue(failure.getCause() instanceof IllegalStateException, "the first failure, wrapped");
        assertEquals("frontend failed", failure.getSuppressed()[0].getMessage());
        assertEquals(List.of(), lifecycle.open());

        closed.clear();
        Closeable file = () -> closed.add("file");
        lifecycle.started(file);
        lifecycle.started(() -> {
            throw new dev.jloop.api.StillServingException("still serving", null);
        });
        assertThrows(dev.jloop.api.StillServingException.class, lifecycle::close);
        assertEquals(List.of(), closed, "what the serving component uses stays open");
        assertSame(file, lifecycle.open().get(0));
    }

    @Test
    void filtersStackWithTheFirstGivenClosestToTheFrontendAndExportsAddTheirOwn()
            throws IOException
    {
        List<String> wrapped = new ArrayList<>();
        Plugins plugins = plugins(List.of(backend), List.of(frontend), List.of(new FakeFilter("a", wrapped), new FakeFilter("b", wrapped), new FakeFilter("c", wrapped)));
        JloopServer server = server(plugins, "--backend", "fake", "--frontend", "fake", "--filter", "a:mark=1", "--filter", "b",
                "--export", "x=" + dir.resolve("x.img") + ",size=64K", "--export", "y=" + dir.resolve("y.img") + ",size=64K,filter=c,mark=2");
        String line = server.start();
        server.close();
        assertTrue(line.contains("backend fake, filters a, b, frontend fake"), line);
        assertEquals(List.of(
                        "b over memory, mark=null", "a over b, mark=1",
                        "c over memory, mark=2", "b over c, mark=2", "a over b, mark=2"),
                wrapped, "wrapped from the backend up: the last --filter first, an export's own below the common ones; "
                        + "an export's option goes to every plugin that declares it");
    }

    @Test
    void filterMistakesAreRefusedBeforeAnyFileIsCreated()
    {
        List<String> wrapped = new ArrayList<>();
        Plugins plugins = plugins(List.of(backend), List.of(frontend), List.of(new FakeFilter("a", wrapped)));
        Path image = dir.resolve("a.img");
        assertPluginMistake(plugins, "unknown filter 'nope'; known filters: a", "--backend", "fake", "--frontend", "fake", "--filter", "nope",
                "--size", "64K", image.toString());
        assertPluginMistake(plugins, "the a filter takes no option 'colour'; it takes: mark", "--backend", "fake", "--frontend", "fake",
                "--filter", "a:colour=red", "--size", "64K", image.toString());
        assertPluginMistake(plugins, "--mark applies to the a filter only, and the backend is 'fake' and the frontend 'fake'",
                "--backend", "fake", "--frontend", "fake", "--mark", "3", "--size", "64K", image.toString());
        assertPluginMistake(plugins, "--export y: unknown filter 'nope'; known filters: a", "--backend", "fake", "--frontend", "fake",
                "--export", "y=" + image + ",size=64K,filter=nope");
        assertPluginMistake(plugins, "--export y: colour is an option of none of the chosen backend and filters (key, level, mark)",
                "--backend", "fake", "--frontend", "fake", "--filter", "a", "--export", "y=" + image + ",size=64K,colour=red");
        assertFalse(Files.exists(image), "nothing is created when an option is wrong");
        assertEquals(List.of(), wrapped);
    }

    @Test
    void autoTakesTheAvailableBackendWithTheHighestPriority()
    {
        assertEquals("fast", ServeModule.auto(List.of(backend("slow", 0, null), backend("fast", 20, null), backend("faster", 30, "no kernel support here"))).name());
    }

    @Test
    void aNegativePriorityKeepsABackendOutOfAuto()
    {
        assertEquals("sync", ServeModule.auto(List.of(backend("by-name-only", -1, null), backend("sync", 0, null))).name());
        UserException e = assertThrows(UserException.class, () -> ServeModule.auto(List.of(backend("by-name-only", -5, null))));
        assertTrue(e.getMessage().contains("by-name-only") && e.getMessage().contains("--backend NAME"), e.getMessage());
    }

    /** The built-in ranks that BackendFactory's javadoc lists. */
    @Test
    void theBuiltInBackendsRankIoUringThenNioThenSync()
    {
        Map<String, Integer> priorities = Registry.load("backend", BackendFactory.class, BackendFactory::name).all().stream()
                .filter(factory -> factory.autoPriority() >= 0)
                .collect(Collectors.toMap(BackendFactory::name, BackendFactory::autoPriority));
        assertEquals(Map.of("io_uring", 20, "nio", 10, "sync", 0), priorities);
    }

    private static BackendFactory backend(String name, int priority, String unavailabilityCause)
    {
        return new BackendFactory()
        {
            @Override
            public String name()
            {
                return name;
            }

            @Override
            public String description()
            {
                return "a backend of priority " + priority;
            }

            @Override
            public String unavailabilityCause()
            {
                return unavailabilityCause;
            }

            @Override
            public int autoPriority()
            {
                return priority;
            }

            @Override
            public BackingFile open(BackendConfig config)
            {
                throw new UnsupportedOperationException("never opened by these tests");
            }
        };
    }

    private static void assertPluginMistake(Plugins plugins, String message, String... args)
    {
        RuntimeException e = assertThrows(RuntimeException.class, () -> server(plugins, args).start());
        assertEquals(message, Main.userMessage(e));
    }

    /** A filter that records what it wraps, and the mark option it got. */
    private static final class FakeFilter
            implements FilterFactory
    {
        private final String name;
        private final List<String> wrapped;

        FakeFilter(String name, List<String> wrapped)
        {
            this.name = name;
            this.wrapped = wrapped;
        }

        @Override
        public String name()
        {
            return name;
        }

        @Override
        public String description()
        {
            return "records";
        }

        @Override
        public List<PluginOption> options()
        {
            return List.of(PluginOption.of("mark", PluginOption.Type.COUNT, null, "a mark", "--mark 1"));
        }

        @Override
        public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
        {
            wrapped.add(name + " over " + (next instanceof Named named ? named.name : "memory") + ", mark=" + options.get("mark"));
            return new Named(next, name);
        }
    }

    private static final class Named
            extends ForwardingBackingFile
    {
        final String name;

        Named(BackingFile next, String name)
        {
            super(next);
            this.name = name;
        }
    }

    private void assertMistake(String message, String... args)
    {
        RuntimeException e = assertThrows(RuntimeException.class, () -> server(List.of(backend), List.of(frontend), args).start());
        assertTrue(e instanceof ProvisionException || e instanceof UserException, e.toString());
        assertEquals(message, Main.userMessage(e));
    }

    /** A backend on memory that records what it was asked to create and open. */
    private static final class RecordingBackend
            implements BackendFactory
    {
        static final byte[] MARK = new byte[64 << 10];

        static {
            MARK[0] = 'j';
        }

        private final String name;
        final List<BackendConfig> opened = new ArrayList<>();
        final List<String> created = new ArrayList<>();

        RecordingBackend(String name)
        {
            this.name = name;
        }

        @Override
        public String name()
        {
            return name;
        }

        @Override
        public String description()
        {
            return "memory, recording";
        }

        @Override
        public List<PluginOption> options()
        {
            return List.of(PluginOption.of("key", PluginOption.Type.STRING, null, "a key", "--key abc"),
                    PluginOption.of("level", PluginOption.Type.COUNT, null, "a level", "--level 2"));
        }

        @Override
        public void create(BackendConfig config, long size)
                throws IOException
        {
            created.add(config.path() + " " + size);
            Files.write(config.path(), MARK);
        }

        @Override
        public BackingFile open(BackendConfig config)
        {
            opened.add(config);
            return new MemoryBackingFile(64 << 10);
        }
    }

    private static final class FakeFrontend
            implements FrontendFactory
    {
        final List<FrontendConfig> configs = new ArrayList<>();

        @Override
        public String name()
        {
            return "fake";
        }

        @Override
        public String description()
        {
            return "serves nothing";
        }

        @Override
        public List<PluginOption> options()
        {
            return List.of(PluginOption.of("greeting", PluginOption.Type.STRING, null, "a greeting", "--greeting hi"));
        }

        @Override
        public Frontend create(FrontendConfig config, List<Export> exports)
        {
            configs.add(config);
            return new Frontend()
            {
                @Override
                public String uri()
                {
                    return "fake:";
                }

                @Override
                public void close() {}
            };
        }
    }
}
