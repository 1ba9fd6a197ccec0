package dev.jloop.dist;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.Enumeration;
import java.util.List;
import java.util.Set;

import static java.util.Objects.requireNonNull;

/**
 * The class loader of one plugin folder ({@code plugins/NAME/*.jar}), after Trino's
 * {@code PluginClassLoader}. Its parent is the JDK's platform class loader, not jloop's class path:
 * a plugin sees the JDK, its own jars, and from jloop only the packages in {@link #SHARED_PACKAGES}.
 * So a plugin may bundle any version of a library that jloop also uses (picocli, Guice, jnr-ffi) and
 * neither side sees the other's copy.
 *
 * <p>What is shared, and why:
 * <ul>
 * <li>{@code dev.jloop.api}: the SPI. A factory must implement jloop's own {@code BackendFactory},
 *     and the kiocbs, iterators and capabilities it is handed are jloop's classes; a second copy in the
 *     plugin would be a different type. A copy of the api bundled by mistake is never used.</li>
 * <li>slf4j's API ({@code org.slf4j} and its {@code spi}, {@code event} and {@code helpers}
 *     packages): a plugin that logs through slf4j then logs through jloop's binding, to jloop's
 *     stderr in jloop's format. Without it a plugin would either fail to link or, with its own
 *     slf4j-api, find no provider and lose its messages. slf4j 2's API also serves callers
 *     compiled against 1.7. The binding itself ({@code org.slf4j.simple}) stays jloop's
 *     business and is not shared.</li>
 * </ul>
 * Every other class, including the rest of jloop ({@code dev.jloop.iter}, {@code dev.jloop.posix},
 * ...), comes from the plugin's jars or not at all.
 */
final class PluginClassLoader
        extends URLClassLoader
{
    static final Set<String> SHARED_PACKAGES = Set.of(
            "dev.jloop.api",
            "org.slf4j",
            "org.slf4j.spi",
            "org.slf4j.event",
            "org.slf4j.helpers");

    static {
        registerAsParallelCapable();
    }

    private final Path folder;
    private final ClassLoader jloop;

    /**
     * @param folder the plugin's folder, for messages
     * @param jars the plugin's jars
     * @param jloop where the shared packages come from: jloop's own class loader
     */
    PluginClassLoader(Path folder, List<URL> jars, ClassLoader jloop)
    {
        super("plugin " + folder, jars.toArray(URL[]::new), getPlatformClassLoader());
        this.folder = requireNonNull(folder, "folder is null");
        this.jloop = requireNonNull(jloop, "jloop is null");
    }

    Path folder()
    {
        return folder;
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve)
            throws ClassNotFoundException
    {
        synchronized (getClassLoadingLock(name)) {
            Class<?> loaded = findLoadedClass(name);
            if (loaded == null) {
                if (isShared(packageOfClass(name))) {
                    loaded = jloop.loadClass(name);
                }
                else {
                    // the platform class loader first (java.*, javax.*), then the plugin's jars
                    loaded = super.loadClass(name, false);
                }
            }
            if (resolve) {
                resolveClass(loaded);
            }
            return loaded;
        }
    }

    @Override
    public URL getResource(String name)
    {
        if (isShared(packageOfResource(name))) {
            return jloop.getResource(name);
        }
        return super.getResource(name);
    }

    @Override
    public Enumeration<URL> getResources(String name)
            throws IOException
    {
        if (isShared(packageOfResource(name))) {
            return jloop.getResources(name);
        }
        return super.getResources(name);
    }

    @Override
    public String toString()
    {
        return getName();
    }

    private static boolean isShared(String packageName)
    {
        return SHARED_PACKAGES.contains(packageName);
    }

    private static String packageOfClass(String className)
    {
        int dot = className.lastIndexOf('.');
        return dot < 0 ? "" : className.substring(0, dot);
    }

    private static String packageOfResource(String resource)
    {
        int slash = resource.lastIndexOf('/');
        return slash < 0 ? "" : resource.substring(0, slash).replace('/', '.');
    }
}
