package dev.jloop.dist;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.FrontendFactory;
import dev.jloop.dist.fakeplugin.FakeBackendFactory;
import dev.jloop.dist.fakeplugin.FakeFrontendFactory;
import dev.jloop.dist.fakeplugin.SyncNamedBackendFactory;
import dev.jloop.dist.fakeplugin.ThrowingBackendFactory;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.Logger;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Plugin folders: found, loaded apart from jloop's class path, and reported one line each when broken. */
class TestPluginFolders
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    private Path fakePlugin(Path directory, String name)
    {
        return PluginJars.jar()
                .withClass(FakeBackendFactory.class)
                .withClass(FakeFrontendFactory.class)
                .withService(BackendFactory.class, FakeBackendFactory.class.getName())
                .withService(FrontendFactory.class, FakeFrontendFactory.class.getName())
                .writeTo(directory.resolve(name).resolve(name + "-1.0.jar"))
                .getParent();
    }

    private static PluginFolders load(Path... directories)
    {
        return PluginFolders.load(List.of(directories), TestPluginFolders.class.getClassLoader());
    }

    private static Registry<BackendFactory> backends(PluginFolders folders)
    {
        return Registry.load("backend", BackendFactory.class, BackendFactory::name, backend -> backend.options(), folders);
    }

    @Test
    void aPluginFolderAddsItsFactoriesBesideTheBuiltInOnes()
    {
        Path folder = fakePlugin(dir, "fake");
        PluginFolders folders = load(dir);
        Registry<BackendFactory> backends = backends(folders);
        Registry<FrontendFactory> frontends = Registry.load("frontend", FrontendFactory.class, FrontendFactory::name, frontend -> {}, folders);
        assertEquals(List.of(), folders.problems());

        assertTrue(backends.names().containsAll(List.of("fake", "nio", "sync")), backends.names().toString());
        assertEquals(folder.toString(), backends.origin("fake"));
        assertEquals(Registry.BUILT_IN, backends.origin("sync"));
        assertEquals(folder.toString(), frontends.origin("fake-protocol"));

        // The plugin's own copy of the class, not the one on jloop's class path.
        BackendFactory fake = backends.get("fake");
        assertInstanceOf(PluginClassLoader.class, fake.getClass().getClassLoader());
        assertNotSame(FakeBackendFactory.class, fake.getClass());
        assertEquals("a backend from a plugin folder", fake.description());
    }

    @Test
    void aPluginSharesOnlyTheApiAndSlf4jWithJloop()
            throws Exception
    {
        fakePlugin(dir, "fake");
        ClassLoader plugin = load(dir).loaders().get(0);
        assertSame(BackendFactory.class, plugin.loadClass(BackendFactory.class.getName()));
        assertSame(Logger.class, plugin.loadClass(Logger.class.getName()));
        assertSame(String.class, plugin.loadClass("java.lang.String"));
        // the rest of the JDK (the platform class loader's modules) as well
        assertEquals("java.sql.Connection", plugin.loadClass("java.sql.Connection").getName());
        for (String hidden : List.of("picocli.CommandLine", "com.google.inject.Guice", "dev.jloop.iter.PagePool", "dev.jloop.dist.Main",
                "org.slf4j.simple.SimpleLogger")) {
            assertThrows(ClassNotFoundException.class, () -> plugin.loadClass(hidden), hidden + " is jloop's own");
        }
        assertEquals(null, plugin.getResource("picocli/CommandLine.class"));
        assertTrue(plugin.getResource("dev/jloop/api/BackendFactory.class") != null);
    }

    @Test
    void aDamagedJarIsReportedWithItsFolderAndTheOthersLoad()
            throws IOException
    {
        Path bad = Files.createDirectories(dir.resolve("bad"));
        byte[] garbage = new byte[4096];
        new Random(1).nextBytes(garbage);
        Files.write(bad.resolve("bad.jar"), garbage);
        fakePlugin(dir, "fake");

        PluginFolders folders = load(dir);
        Registry<BackendFactory> backends = backends(folders);
        assertEquals(List.of("plugin " + bad + " not loaded: bad.jar is not a readable jar: zip END header not found"), folders.problems());
        assertTrue(backends.names().contains("fake"), backends.names().toString());
    }

    @Test
    void aFactoryThatFailsToConstructIsReportedAndTheOthersLoad()
    {
        Path throwing = PluginJars.jar()
                .withClass(ThrowingBackendFactory.class)
                .withService(BackendFactory.class, ThrowingBackendFactory.class.getName())
                .writeTo(dir.resolve("throwing/throwing.jar"))
                .getParent();
        fakePlugin(dir, "fake");

        PluginFolders folders = load(dir);
        Registry<BackendFactory> backends = backends(folders);
        assertEquals(1, folders.problems().size(), folders.problems().toString());
        String problem = folders.problems().get(0);
        assertTrue(problem.startsWith("plugin " + throwing + ": its backends not loaded: "), problem);
        assertTrue(problem.contains(ThrowingBackendFactory.class.getName()) && problem.contains("IllegalStateException: the throwing plugin refuses to start"),
                problem);
        assertFalse(backends.names().contains("throwing"));
        assertTrue(backends.names().contains("fake"));
    }

    @Test
    void aProviderThatIsMissingIsReported()
    {
        Path missing = PluginJars.jar()
                .withService(BackendFactory.class, "com.example.NoSuchFactory")
                .writeTo(dir.resolve("missing/missing.jar"))
                .getParent();
        PluginFolders folders = load(dir);
        backends(folders);
        assertEquals(List.of("plugin " + missing + ": its backends not loaded: dev.jloop.api.BackendFactory: Provider com.example.NoSuchFactory not found"),
                folders.problems());
    }

    @Test
    void aNameThatIsTakenLeavesThePluginOut()
    {
        fakePlugin(dir, "a");
        fakePlugin(dir, "b");
        Path impostor = PluginJars.jar()
                .withClass(SyncNamedBackendFactory.class)
                .withService(BackendFactory.class, SyncNamedBackendFactory.class.getName())
                .writeTo(dir.resolve("impostor/impostor.jar"))
                .getParent();

        PluginFolders folders = load(dir);
        Registry<BackendFactory> backends = backends(folders);
        assertEquals(List.of(
                        "plugin " + dir.resolve("b") + ": its backends not loaded: two backends are named 'fake': "
                                + FakeBackendFactory.class.getName() + " (plugin " + dir.resolve("a") + ") and " + FakeBackendFactory.class.getName(),
                        "plugin " + impostor + ": its backends not loaded: two backends are named 'sync': dev.jloop.backend.sync.SyncBackendFactory (built in) and "
                                + SyncNamedBackendFactory.class.getName()),
                folders.problems());
        assertEquals(dir.resolve("a").toString(), backends.origin("fake"));
        assertEquals(Registry.BUILT_IN, backends.origin("sync"));
    }

    @Test
    void foldersWithoutFactoriesAndStrayJarsAreReported()
            throws IOException
    {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Files.writeString(empty.resolve("README"), "no jar here");
        Path plain = PluginJars.jar().with("hello.txt", "hello".getBytes(StandardCharsets.UTF_8)).writeTo(dir.resolve("plain/plain.jar")).getParent();
        PluginJars.jar().with("hello.txt", new byte[1]).writeTo(dir.resolve("stray.jar"));
        Files.writeString(dir.resolve("README.txt"), "plain files of the plugin directory are not plugins");

        PluginFolders folders = load(dir, dir.resolve("nope"));
        Registry<BackendFactory> backends = backends(folders);
        folders.checkUsed(List.of(backends));
        assertEquals(List.of(
                        "plugin " + empty + " not loaded: it holds no .jar file",
                        dir.resolve("stray.jar") + " is not loaded: a plugin is a folder of jars, " + dir.resolve("NAME") + "/stray.jar, not a jar of the plugin directory itself",
                        "plugin directory " + dir.resolve("nope") + " (from JLOOP_PLUGIN_PATH) is not a directory",
                        "plugin " + plain + " offers nothing: its jars name no factory in META-INF/services/dev.jloop.api.BackendFactory, "
                                + "FrontendFactory or FilterFactory"),
                folders.problems());
        for (String problem : folders.problems()) {
            assertFalse(problem.contains("\n"), problem);
        }
    }

    @Test
    void theDistributionsPluginsComeFirstThenThePluginPath()
            throws IOException
    {
        Path home = Files.createDirectories(dir.resolve("home/plugins")).getParent();
        assertEquals(List.of(home.resolve("plugins"), dir.resolve("one"), dir.resolve("two")),
                PluginFolders.directories(home.toString(), dir.resolve("one") + "::" + dir.resolve("two") + ":"));
        assertEquals(List.of(dir.resolve("one")), PluginFolders.directories(dir.resolve("no-home").toString(), dir.resolve("one").toString()));
        assertEquals(List.of(), PluginFolders.directories(null, null));
        assertEquals(List.of(Path.of("relative").toAbsolutePath()), PluginFolders.directories(null, "relative"));
    }

    @Test
    void jloopBackendsFrontendsAndFiltersListThePluginsWithWhereTheyCameFrom()
    {
        Path folder = fakePlugin(dir, "fake");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exitCode = Main.run(new String[] {"backends"}, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), load(dir));
        assertEquals(0, exitCode, err.toString(StandardCharsets.UTF_8));
        String listing = out.toString(StandardCharsets.UTF_8);
        assertTrue(listing.contains("""
                fake (plugin %s)
                    a backend from a plugin folder
                    not available: it only pretends, auto priority -5
                    --fake-level N
                        count, default 3: how fake it is
                        e.g. --backend fake --fake-level 4
                """.formatted(folder)), listing);
        assertTrue(listing.contains("""
                sync (built in)
                    pread/pwrite in the calling thread, one request at a time (the loop driver before AIO)
                    available, auto priority 0
                    no options
                """), listing);

        ByteArrayOutputStream frontends = new ByteArrayOutputStream();
        assertEquals(0, Main.run(new String[] {"frontends"}, new PrintStream(frontends, true, StandardCharsets.UTF_8), System.err, load(dir)));
        assertTrue(frontends.toString(StandardCharsets.UTF_8).contains("fake-protocol (plugin " + folder + ")\n    a frontend from a plugin folder\n    no options\n"),
                frontends.toString(StandardCharsets.UTF_8));

        ByteArrayOutputStream filters = new ByteArrayOutputStream();
        assertEquals(0, Main.run(new String[] {"filters"}, new PrintStream(filters, true, StandardCharsets.UTF_8), System.err, load(dir)));
        assertTrue(filters.toString(StandardCharsets.UTF_8).contains("delay (built in)\n"), filters.toString(StandardCharsets.UTF_8));
    }

    @Test
    void aPluginsOptionsJoinServe()
    {
        fakePlugin(dir, "fake");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertEquals(0, Main.run(new String[] {"serve", "--help"}, new PrintStream(out, true, StandardCharsets.UTF_8), System.err, load(dir)));
        assertTrue(out.toString(StandardCharsets.UTF_8).contains("--fake-level=N"), out.toString(StandardCharsets.UTF_8));
    }
}
