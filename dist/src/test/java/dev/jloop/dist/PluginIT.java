package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Plugins as a third party makes them and a user installs them: {@code examples/xor-backend} built on
 * its own with Maven against this build's artifacts, its jar dropped into a plugin folder named in
 * {@code JLOOP_PLUGIN_PATH}, and the assembled {@code bin/jloop} serving through it; a plugin that
 * brings its own copy of a library jloop also uses; a damaged one.
 */
class PluginIT
        extends AbstractJloopIT
{
    private static final String KEY = "0x5a17c3";
    private static final byte[] KEY_BYTES = {0x5a, 0x17, (byte) 0xc3};

    /** Where the example is built, once for the class. */
    @TempDir(factory = TargetTempDirFactory.class)
    static Path work;

    private static Path xorJar;

    private Path plugins;

    /**
     * Builds the example as its author would, {@code mvn package} (its tests included: jloop's
     * conformance suite), with this build's artifacts staged in {@code target/it-repo} by
     * maven-invoker-plugin. Offline: whatever else it needs (Maven's plugins, JUnit) comes from this
     * build's own local repository, through a {@code file://} mirror that offline mode is told to allow.
     */
    @BeforeAll
    static void buildTheExamplePlugin()
            throws IOException
    {
        Path source = Path.of(property("jloop.examples")).resolve("xor-backend");
        Path project = work.resolve("xor-backend");
        try (Stream<Path> files = Files.walk(source)) {
            for (Path file : files.filter(path -> !source.relativize(path).startsWith("target")).toList()) {
                Path target = project.resolve(source.relativize(file).toString());
                if (Files.isDirectory(file)) {
                    Files.createDirectories(target);
                }
                else {
                    Files.copy(file, target);
                }
            }
        }
        Path settings = Files.writeString(work.resolve("settings.xml"), """
                <settings>
                    <localRepository>%s</localRepository>
                    <mirrors>
                        <mirror>
                            <id>jloop-build-repository</id>
                            <mirrorOf>*</mirrorOf>
                            <url>%s</url>
                        </mirror>
                    </mirrors>
                </settings>
                """.formatted(property("jloop.it.repo"), Path.of(property("jloop.build.repo")).toUri()));
        String maven = Path.of(property("maven.home"), "bin", "mvn").toString();
        Exec build = Exec.run(600, project, Map.of(), maven, "-B", "-o", "-q", "-Dstyle.color=never",
                "-s", settings.toString(), "-Daether.offline.protocols=file",
                "-Djloop.version=" + property("jloop.version"), "-f", project.resolve("pom.xml").toString(), "package");
        assertEquals(0, build.exitCode(), () -> "the example plugin did not build:\n" + build.stdout() + build.stderr());
        xorJar = project.resolve("target/jloop-xor-backend-1.0-SNAPSHOT.jar");
        assertTrue(Files.isRegularFile(xorJar), xorJar + " missing after the build");
    }

    private static String property(String name)
    {
        String value = System.getProperty(name);
        assertNotNull(value, name + " is not set: run through mvn verify");
        return value;
    }

    @BeforeEach
    void setUp()
            throws IOException
    {
        plugins = Files.createDirectories(dir.resolve("plugins"));
    }

    private Map<String, String> pluginPath()
    {
        return Map.of("JLOOP_PLUGIN_PATH", plugins.toString());
    }

    private Exec jloopWithPlugins(String... args)
    {
        return Exec.run(60, null, pluginPath(), JloopProcess.command(args).toArray(String[]::new));
    }

    private void installXor()
            throws IOException
    {
        Files.copy(xorJar, Files.createDirectories(plugins.resolve("xor")).resolve(xorJar.getFileName()));
    }

    @Test
    void theXorPluginServesAnImageThatItsFileHoldsXored()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        installXor();
        Exec listing = jloopWithPlugins("backends");
        assertEquals(0, listing.exitCode(), listing.stderr());
        assertTrue(listing.stdout().contains("xor (plugin " + plugins.resolve("xor") + ")\n"), listing.stdout());
        assertTrue(listing.stdout().contains("    --xor-key TEXT\n"), listing.stdout());
        assertEquals("", listing.stderr());

        int size = 8 << 20;
        byte[] image = new byte[size];
        new Random(42).nextBytes(image);
        Path in = Files.write(dir.resolve("in.raw"), image);
        Path out = dir.resolve("out.raw");
        Path disk = dir.resolve("disk.img");
        try (JloopProcess server = JloopProcess.serve(dir, pluginPath(), "--backend", "xor", "--xor-key", KEY, "--size", "8M",
                "--socket", dir.resolve("nbd.sock").toString(), disk.toString())) {
            assertTrue(server.startLine().contains("backend xor"), server.startLine());
            Exec.check(120, "nbdcopy", in.toString(), server.uri());
            Exec.check(120, "nbdcopy", server.uri(), out.toString());
            assertEquals(0, server.stop(), server.log());
        }
        assertArrayEquals(image, Files.readAllBytes(out), "the image read back through the xor backend");

        byte[] stored = Files.readAllBytes(disk);
        assertEquals(size, stored.length);
        for (int i = 0; i < size; i++) {
            if (stored[i] != (byte) (image[i] ^ KEY_BYTES[i % KEY_BYTES.length])) {
                throw new AssertionError("byte " + i + " of the file is not the image's XORed with " + KEY);
            }
        }
    }

    /**
     * A plugin whose jar holds its own {@code picocli.CommandLine}, a class jloop's command line is
     * made of, with nothing alike inside: jloop's command line still works, and the plugin gets its
     * own (the factory's description comes from it).
     */
    @Test
    void aPluginsOwnCopyOfAClassJloopHasStaysItsOwn()
            throws Exception
    {
        Path folder = plugins.resolve("conflict");
        compilePlugin(folder.resolve("conflict.jar"), Map.of(
                "picocli/CommandLine.java", """
                        package picocli;

                        public final class CommandLine
                        {
                            public static String whose()
                            {
                                return "described by the plugin's own picocli.CommandLine";
                            }
                        }
                        """,
                "example/conflict/ConflictBackendFactory.java", """
                        package example.conflict;

                        import dev.jloop.api.BackendConfig;
                        import dev.jloop.api.BackendFactory;
                        import dev.jloop.api.BackingFile;

                        import java.io.IOException;

                        public class ConflictBackendFactory
                                implements BackendFactory
                        {
                            public String name()
                            {
                                return "conflict";
                            }

                            public String description()
                            {
                                return picocli.CommandLine.whose();
                            }

                            public int autoPriority()
                            {
                                return -1;
                            }

                            public BackingFile open(BackendConfig config)
                                    throws IOException
                            {
                                throw new IOException("the conflict backend opens nothing");
                            }
                        }
                        """),
                "example.conflict.ConflictBackendFactory");

        Exec listing = jloopWithPlugins("backends");
        assertEquals(0, listing.exitCode(), listing.stderr());
        assertEquals("", listing.stderr());
        assertTrue(listing.stdout().contains("conflict (plugin " + folder + ")\n    described by the plugin's own picocli.CommandLine\n"), listing.stdout());

        Exec help = jloopWithPlugins("serve", "--help");
        assertEquals(0, help.exitCode(), help.stderr());
        assertTrue(help.stdout().contains("--backend"), help.stdout());
        try (JloopProcess server = JloopProcess.serve(dir, pluginPath(), "--backend", "sync", "--size", "1M",
                "--socket", dir.resolve("nbd.sock").toString(), dir.resolve("disk.img").toString())) {
            assertEquals(0, server.stop(), server.log());
        }
    }

    @Test
    void aDamagedPluginIsNamedInOneLineAndTheOthersLoad()
            throws Exception
    {
        installXor();
        Path broken = Files.createDirectories(plugins.resolve("broken"));
        byte[] garbage = new byte[10_000];
        new Random(7).nextBytes(garbage);
        Files.write(broken.resolve("broken.jar"), garbage);

        Exec listing = jloopWithPlugins("backends");
        assertEquals(0, listing.exitCode(), listing.stderr());
        List<String> warnings = listing.stderr().lines().toList();
        assertEquals(1, warnings.size(), listing.stderr());
        assertTrue(warnings.get(0).contains("plugin " + broken + " not loaded: broken.jar is not a readable jar"), warnings.get(0));
        assertTrue(listing.stdout().contains("xor (plugin " + plugins.resolve("xor") + ")\n"), listing.stdout());

        try (JloopProcess server = JloopProcess.serve(dir, pluginPath(), "--backend", "xor", "--xor-key", KEY, "--size", "1M",
                "--socket", dir.resolve("nbd.sock").toString(), dir.resolve("disk.img").toString())) {
            assertTrue(server.startLine().contains("backend xor"), server.startLine());
            assertEquals(0, server.stop(), server.log());
            assertTrue(server.log().contains("plugin " + broken + " not loaded"), server.log());
        }

        Exec unknown = jloopWithPlugins("serve", "--backend", "broken", "--size", "1M", dir.resolve("other.img").toString());
        assertEquals(1, unknown.exitCode());
        assertTrue(unknown.stderr().contains("jloop: unknown backend 'broken'"), unknown.stderr());
        assertFalse(Files.exists(dir.resolve("other.img")), "nothing is created for an unknown backend");
    }

    /** Compiles {@code sources} (path to text) against the distribution's jloop-api, and jars them with their service file. */
    private void compilePlugin(Path jar, Map<String, String> sources, String factory)
            throws IOException
    {
        Path src = Files.createDirectories(dir.resolve("plugin-src"));
        Path classes = Files.createDirectories(dir.resolve("plugin-classes"));
        List<String> arguments = new ArrayList<>(List.of("-d", classes.toString(), "--release", "17",
                "-cp", JloopProcess.home().resolve("lib/jloop-api-" + property("jloop.version") + ".jar").toString()));
        for (Map.Entry<String, String> source : sources.entrySet()) {
            Path file = src.resolve(source.getKey());
            Files.createDirectories(file.getParent());
            Files.writeString(file, source.getValue());
            arguments.add(file.toString());
        }
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        assertNotNull(javac, "no Java compiler: the tests need a JDK");
        assertEquals(0, javac.run(null, null, null, arguments.toArray(String[]::new)), "compiling the plugin");

        PluginJars contents = PluginJars.jar().with("META-INF/services/dev.jloop.api.BackendFactory", (factory + "\n").getBytes(StandardCharsets.UTF_8));
        try (Stream<Path> files = Files.walk(classes)) {
            for (Path file : files.filter(Files::isRegularFile).sorted().toList()) {
                contents.with(classes.relativize(file).toString(), Files.readAllBytes(file));
            }
        }
        contents.writeTo(jar);
    }
}
