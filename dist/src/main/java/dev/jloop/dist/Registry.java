package dev.jloop.dist;

import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * Factories of one kind (backends or frontends) found with {@link ServiceLoader}, by name: jloop's
 * own, then each plugin's. Loud on failure: among jloop's own factories a malformed or duplicate name
 * stops the start; a plugin whose factories cannot be loaded, or whose names are malformed or taken,
 * is left out and reported, and the others load. An unknown name is answered with the list of known
 * ones.
 */
final class Registry<F>
{
    static final String BUILT_IN = "built in";

    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9_-]*");

    private final String kind;
    private final Map<String, F> factories;
    private final Map<String, String> origins;

    /** A registry of {@code factories}, all built in. */
    Registry(String kind, Collection<F> factories, Function<F, String> nameOf)
    {
        this(kind);
        for (F factory : factories) {
            String name = nameOf.apply(factory);
            String problem = problem(name, factory);
            if (problem != null) {
                throw new IllegalStateException(problem);
            }
            this.factories.put(name, factory);
            this.origins.put(name, BUILT_IN);
        }
    }

    private Registry(String kind)
    {
        this.kind = requireNonNull(kind, "kind is null");
        this.factories = new LinkedHashMap<>();
        this.origins = new LinkedHashMap<>();
    }

    /** jloop's own factories only, found on its class path. */
    static <F> Registry<F> load(String kind, Class<F> type, Function<F, String> nameOf)
    {
        try {
            return new Registry<>(kind, ServiceLoader.load(type).stream().map(ServiceLoader.Provider::get).toList(), nameOf);
        }
        catch (ServiceConfigurationError e) {
            throw new IllegalStateException("cannot load " + kind + "s: " + e.getMessage(), e);
        }
    }

    /**
     * jloop's own factories, then those of each plugin of {@code folders}. {@code check} asks a
     * plugin's factory what jloop asks of every factory at start (its description, its options): a
     * factory that fails there leaves its plugin out, where it would otherwise stop every command.
     * What cannot be loaded is recorded with {@link PluginFolders#notLoaded(java.nio.file.Path, String, String)}.
     */
    static <F> Registry<F> load(String kind, Class<F> type, Function<F, String> nameOf, Consumer<F> check, PluginFolders folders)
    {
        Registry<F> registry = load(kind, type, nameOf);
        for (PluginClassLoader loader : folders.loaders()) {
            Map<String, F> found = new LinkedHashMap<>();
            try {
                for (ServiceLoader.Provider<F> provider : ServiceLoader.load(type, loader).stream().toList()) {
                    F factory = provider.get();
                    String name = nameOf.apply(factory);
                    String problem = registry.problem(name, factory);
                    if (problem == null && found.containsKey(name)) {
                        problem = "two " + kind + "s are named '" + name + "': " + found.get(name).getClass().getName() + " and " + factory.getClass().getName();
                    }
                    if (problem != null) {
                        folders.notLoaded(loader.folder(), kind, problem);
                        found.clear();
                        break;
                    }
                    check.accept(factory);
                    found.put(name, factory);
                }
            }
            catch (ServiceConfigurationError | RuntimeException | LinkageError e) {
                folders.notLoaded(loader.folder(), kind, PluginFolders.describe(e));
                continue;
            }
            for (Map.Entry<String, F> entry : found.entrySet()) {
                registry.factories.put(entry.getKey(), entry.getValue());
                registry.origins.put(entry.getKey(), loader.folder().toString());
            }
        }
        return registry;
    }

    /** Why {@code factory} cannot join under {@code name}, or {@code null} if it can. */
    private String problem(String name, F factory)
    {
        if (name == null || !NAME.matcher(name).matches()) {
            return kind + " factory " + factory.getClass().getName() + " has a malformed name: " + name;
        }
        F previous = factories.get(name);
        if (previous != null) {
            String where = origins.get(name);
            return "two " + kind + "s are named '" + name + "': " + previous.getClass().getName()
                    + (where.equals(BUILT_IN) ? " (built in)" : " (plugin " + where + ")") + " and " + factory.getClass().getName();
        }
        return null;
    }

    /** The factory called {@code name}; an error listing the known names if there is none. */
    F get(String name)
    {
        F factory = factories.get(name);
        if (factory == null) {
            throw new UserException("unknown " + kind + " '" + name + "'; known " + kind + "s: " + String.join(", ", names()));
        }
        return factory;
    }

    List<String> names()
    {
        return factories.keySet().stream().sorted().toList();
    }

    Collection<F> all()
    {
        return factories.values().stream().sorted(Comparator.comparing(f -> f.getClass().getName())).toList();
    }

    /** Whether a factory comes from {@code origin}. */
    boolean hasOrigin(String origin)
    {
        return origins.containsValue(origin);
    }

    /** Where the factory called {@code name} comes from: {@value #BUILT_IN}, or its plugin's folder. */
    String origin(String name)
    {
        String origin = origins.get(name);
        if (origin == null) {
            throw new IllegalArgumentException("no " + kind + " is named '" + name + "'");
        }
        return origin;
    }
}
