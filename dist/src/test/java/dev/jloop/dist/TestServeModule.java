package dev.jloop.dist;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How {@code --backend auto} chooses, as {@link BackendFactory#autoPriority()} says. */
class TestServeModule
{
    @Test
    void autoTakesTheAvailableBackendWithTheHighestPriority()
    {
        Registry<BackendFactory> backends = registry(
                backend("slow", 0, null),
                backend("fast", 20, null),
                backend("faster", 30, "no kernel support here"));
        assertEquals("fast", ServeModule.auto(backends).name());
    }

    @Test
    void aNegativePriorityKeepsABackendOutOfAuto()
    {
        assertEquals("sync", ServeModule.auto(registry(backend("by-name-only", -1, null), backend("sync", 0, null))).name());
        UserException e = assertThrows(UserException.class, () -> ServeModule.auto(registry(backend("by-name-only", -5, null))));
        assertTrue(e.getMessage().contains("by-name-only") && e.getMessage().contains("--backend NAME"), e.getMessage());
    }

    /** The built-in ranks that BackendFactory's javadoc lists. */
    @Test
    void theBuiltInBackendsRankIoUringThenNioThenSync()
    {
        Map<String, Integer> priorities = Registry.load("backend", BackendFactory.class, BackendFactory::name).all().stream()
                .collect(Collectors.toMap(BackendFactory::name, BackendFactory::autoPriority));
        assertEquals(Map.of("io_uring", 20, "nio", 10, "sync", 0), priorities);
    }

    private static Registry<BackendFactory> registry(BackendFactory... factories)
    {
        return new Registry<>("backend", List.of(factories), BackendFactory::name);
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
}
