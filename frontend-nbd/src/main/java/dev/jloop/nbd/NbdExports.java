package dev.jloop.nbd;

import dev.jloop.api.Export;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * The exports a server offers, as its clients name them: checked once (at least one, names unique
 * and within the protocol's 4096 bytes), listed in order for NBD_OPT_LIST, and looked up by name.
 * Immutable; shared by every connection.
 */
final class NbdExports
{
    /** Longest export name the protocol allows, in bytes of UTF-8. */
    static final int MAX_NAME_LENGTH = 4096;

    private final List<Export> exports;
    private final Map<String, Export> byName;

    NbdExports(List<Export> exports)
    {
        this.exports = List.copyOf(requireNonNull(exports, "exports is null"));
        if (this.exports.isEmpty()) {
            throw new IllegalArgumentException("no exports to serve");
        }
        Map<String, Export> byName = new LinkedHashMap<>();
        for (Export export : this.exports) {
            if (byName.put(export.name(), export) != null) {
                throw new IllegalArgumentException("two exports named '" + export.name() + "'");
            }
            if (export.name().getBytes(StandardCharsets.UTF_8).length > MAX_NAME_LENGTH) {
                throw new IllegalArgumentException("export name longer than the protocol's 4096 bytes: " + export.name());
            }
        }
        this.byName = Map.copyOf(byName);
    }

    /** In the order they were given; the first is the default. */
    List<Export> list()
    {
        return exports;
    }

    /** The export of that name, or null; the empty name (the client's default) is the first export unless one is named "". */
    Export lookup(String name)
    {
        Export export = byName.get(name);
        if (export == null && name.isEmpty()) {
            return exports.get(0);
        }
        return export;
    }
}
