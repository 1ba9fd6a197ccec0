package dev.jloop.dist;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;

/** Plugin jars built by tests: compiled classes and a service file, as a plugin's build would package them. */
final class PluginJars
{
    private final Map<String, byte[]> entries = new LinkedHashMap<>();

    static PluginJars jar()
    {
        return new PluginJars();
    }

    /** Adds the compiled class of this class path, under its own name. */
    PluginJars withClass(Class<?> type)
    {
        String resource = type.getName().replace('.', '/') + ".class";
        try (InputStream in = type.getClassLoader().getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("no class file for " + type.getName());
            }
            return with(resource, in.readAllBytes());
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Lists {@code providers} as the providers of {@code service} in {@code META-INF/services}. */
    PluginJars withService(Class<?> service, String... providers)
    {
        return with("META-INF/services/" + service.getName(), (String.join("\n", providers) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    PluginJars with(String name, byte[] content)
    {
        entries.put(name, content);
        return this;
    }

    /** Writes the jar to {@code file}, creating its folder. */
    Path writeTo(Path file)
    {
        Manifest manifest = new Manifest();
        manifest.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        try {
            Files.createDirectories(file.getParent());
            try (OutputStream out = Files.newOutputStream(file);
                    JarOutputStream jar = new JarOutputStream(out, manifest)) {
                for (Map.Entry<String, byte[]> entry : entries.entrySet()) {
                    jar.putNextEntry(new JarEntry(entry.getKey()));
                    jar.write(entry.getValue());
                    jar.closeEntry();
                }
            }
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return file;
    }
}
