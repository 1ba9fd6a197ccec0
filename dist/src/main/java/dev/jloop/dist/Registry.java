package dev.jloop.dist;

import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.Function;
import java.util.regex.Pattern;

import static java.util.Objects.requireNonNull;

/**
 * Factories of one kind (backends or frontends) found with {@link ServiceLoader}, by name. Loud on
 * failure: a malformed or duplicate name stops the start, and an unknown name is answered with the
 * list of known ones.
 */
final class Registry<F>
{
    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9_-]*");

    private final String kind;
    private final Map<String, F> factories;

    Registry(String kind, Collection<F> factories, Function<F, String> nameOf)
    {
        this.kind = requireNonNull(kind, "kind is null");
        Map<String, F> byName = new LinkedHashMap<>();
        for (F factory : factories) {
            String name = nameOf.apply(factory);
            if (name == null || !NAME.matcher(name).matches()) {
                throw new IllegalStateException(kind + " factory " + factory.getClass().getName() + " has a malformed name: " + name);
            }
            F previous = byName.putIfAbsent(name, factory);
            if (previous != null) {
                throw new IllegalStateException("two " + kind + "s are named '" + name + "': "
                        + previous.getClass().getName() + " and " + factory.getClass().getName());
            }
        }
        this.factories = Map.copyOf(byName);
    }

    static <F> Registry<F> load(String kind, Class<F> type, Function<F, String> nameOf)
    {
        try {
            return new Registry<>(kind, ServiceLoader.load(type).stream().map(ServiceLoader.Provider::get).toList(), nameOf);
        }
        catch (ServiceConfigurationError e) {
            throw new IllegalStateException("cannot load " + kind + "s: " + e.getMessage(), e);
        }
    }

    Collection<F> all()
    {
        return factories.values().stream().sorted(Comparator.comparing(f -> f.getClass().getName())).toList();
    }
}
