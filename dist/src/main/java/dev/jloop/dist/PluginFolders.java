package dev.jloop.dist;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.MalformedURLException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceConfigurationError;
import java.util.jar.JarFile;
import java.util.stream.Stream;

import static java.util.Objects.requireNonNull;

/**
 * The plugin folders jloop finds at start, as Trino's {@code plugin/NAME/} and nbdkit's plugin
 * directory: in every plugin directory, each folder {@code NAME/} is one plugin, made of the
 * {@code *.jar} files directly in it, loaded by a {@link PluginClassLoader} of its own. The plugin
 * directories are the distribution's {@code plugins/}, then each directory that
 * {@value #PATH_VARIABLE} names (colon-separated, as {@code PATH}), all with the same layout.
 *
 * <p>A plugin that cannot be loaded is a problem, reported in one line with its folder and the
 * reason; the other plugins load all the same, and jloop starts.
 */
final class PluginFolders
{
    static final String PATH_VARIABLE = "JLOOP_PLUGIN_PATH";

    private static final Logger log = LoggerFactory.getLogger(PluginFolders.class);

    private final List<PluginClassLoader> loaders = new ArrayList<>();
    private final List<String> problems = new ArrayList<>();

    private PluginFolders() {}

    /**
     * The plugin directories: {@code HOME/plugins} when jloop runs from a distribution that has one
     * ({@code home} may be {@code null}), then the entries of {@code pluginPath} (may be {@code null}),
     * relative ones against the working directory.
     */
    static List<Path> directories(String home, String pluginPath)
    {
        List<Path> directories = new ArrayList<>();
        if (home != null && Files.isDirectory(Path.of(home, "plugins"))) {
            directories.add(Path.of(home, "plugins").toAbsolutePath().normalize());
        }
        if (pluginPath != null) {
            for (String entry : pluginPath.split(":")) {
                if (!entry.isBlank()) {
                    directories.add(Path.of(entry).toAbsolutePath().normalize());
                }
            }
        }
        return directories;
    }

    /** No plugins: jloop's own class path only. */
    static PluginFolders none()
    {
        return new PluginFolders();
    }

    /** Finds the plugins of {@code directories}, in that order, and in each by folder name. */
    static PluginFolders load(List<Path> directories, ClassLoader jloop)
    {
        requireNonNull(jloop, "jloop is null");
        PluginFolders folders = new PluginFolders();
        for (Path directory : directories) {
            if (!Files.isDirectory(directory)) {
                folders.problems.add("plugin directory " + directory + " (from " + PATH_VARIABLE + ") is not a directory");
                continue;
            }
            for (Path entry : list(folders, directory)) {
                String name = entry.getFileName().toString();
                if (name.startsWith(".")) {
                    continue;
                }
                if (Files.isDirectory(entry)) {
                    folders.loadFolder(entry, jloop);
                }
                else if (name.endsWith(".jar")) {
                    folders.problems.add(entry + " is not loaded: a plugin is a folder of jars, "
                            + directory.resolve("NAME") + "/" + name + ", not a jar of the plugin directory itself");
                }
            }
        }
        return folders;
    }

    private void loadFolder(Path folder, ClassLoader jloop)
    {
        List<URL> urls = new ArrayList<>();
        for (Path entry : list(this, folder)) {
            if (!entry.getFileName().toString().endsWith(".jar") || !Files.isRegularFile(entry)) {
                continue;
            }
            // URLClassLoader skips a jar it cannot open without a word: check each here, so that a
            // damaged one is named instead of its classes going missing.
            try (JarFile ignored = new JarFile(entry.toFile())) {
                urls.add(entry.toUri().toURL());
            }
            catch (MalformedURLException e) {
                throw new UncheckedIOException(e);
            }
            catch (IOException | SecurityException e) {
                notLoaded(folder, entry.getFileName() + " is not a readable jar: " + describe(e));
                return;
            }
        }
        if (urls.isEmpty()) {
            notLoaded(folder, "it holds no .jar file");
            return;
        }
        loaders.add(new PluginClassLoader(folder, urls, jloop));
    }

    private static List<Path> list(PluginFolders folders, Path directory)
    {
        try (Stream<Path> entries = Files.list(directory)) {
            return entries.sorted().toList();
        }
        catch (IOException e) {
            folders.problems.add("cannot list plugin directory " + directory + ": " + describe(e));
            return List.of();
        }
    }

    /** One class loader per plugin folder, in the order they were found. */
    List<PluginClassLoader> loaders()
    {
        return List.copyOf(loaders);
    }

    /** Records that the plugin of {@code folder} was not loaded at all, and why. */
    void notLoaded(Path folder, String reason)
    {
        problems.add("plugin " + folder + " not loaded: " + reason);
    }

    /** Records that the {@code kind}s of the plugin of {@code folder} were not loaded, and why. */
    void notLoaded(Path folder, String kind, String reason)
    {
        problems.add("plugin " + folder + ": its " + kind + "s not loaded: " + reason);
    }

    /** Reports the plugin folders that {@code registries} hold nothing of: their jars offer no factory. */
    void checkUsed(List<Registry<?>> registries)
    {
        for (PluginClassLoader loader : loaders) {
            String origin = loader.folder().toString();
            boolean used = registries.stream().anyMatch(registry -> registry.hasOrigin(origin));
            boolean reported = problems.stream().anyMatch(problem -> problem.startsWith("plugin " + origin + ":"));
            if (!used && !reported) {
                problems.add("plugin " + origin + " offers nothing: its jars name no factory in META-INF/services/"
                        + "dev.jloop.api.BackendFactory, FrontendFactory or FilterFactory");
            }
        }
    }

    /** What went wrong, one line each. */
    List<String> problems()
    {
        return List.copyOf(problems);
    }

    /** Logs every problem as a warning: one line each on stderr. */
    void logProblems()
    {
        for (String problem : problems) {
            log.warn("{}", problem);
        }
    }

    /**
     * A throwable and its causes on one line: {@code ServiceConfigurationError}'s message already
     * names the service and the provider, the rest are named by their class.
     */
    static String describe(Throwable throwable)
    {
        StringBuilder text = new StringBuilder();
        Throwable t = throwable;
        for (int depth = 0; t != null && depth < 5; depth++) {
            if (depth > 0) {
                text.append(": ");
            }
            String message = t.getMessage();
            boolean named = t instanceof ServiceConfigurationError || t instanceof IOException;
            if (!named || message == null) {
                text.append(t.getClass().getSimpleName());
                if (message != null) {
                    text.append(": ");
                }
            }
            if (message != null) {
                text.append(message);
            }
            t = t.getCause() == t ? null : t.getCause();
        }
        return text.toString().replaceAll("\\s*\\R\\s*", " ");
    }
}
