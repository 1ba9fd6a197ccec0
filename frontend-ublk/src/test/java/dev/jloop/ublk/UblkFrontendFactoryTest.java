package dev.jloop.ublk;

import dev.jloop.api.FrontendFactory;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Map;
import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UblkFrontendFactoryTest
{
    @Test
    void foundByServiceLoaderAsUblk()
    {
        assertTrue(ServiceLoader.load(FrontendFactory.class).stream()
                .anyMatch(provider -> provider.get() instanceof UblkFrontendFactory && provider.get().name().equals("ublk")));
    }

    @Test
    void options()
            throws IOException
    {
        UblkServer.Config defaults = UblkFrontendFactory.config(Map.of());
        assertEquals(1, defaults.queues());
        assertEquals(128, defaults.queueDepth());
        assertEquals(-1, defaults.devId());
        assertEquals(512 << 10, defaults.bufferBytes());

        UblkServer.Config set = UblkFrontendFactory.config(Map.of("queues", "2", "queue-depth", "64", "ublk-id", "7"));
        assertEquals(2, set.queues());
        assertEquals(64, set.queueDepth());
        assertEquals(7, set.devId());
    }

    @Test
    void badOptions()
    {
        assertEquals("--queues must be a number: 'x'",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queues", "x"))).getMessage());
        assertEquals("ublk queue depth must be from 1 to 4096: 0",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queue-depth", "0"))).getMessage());
        assertEquals("ublk device id must be 0 or more: -3",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("ublk-id", "-3"))).getMessage());
    }

    @Test
    void unknownOptionsAreRefused()
    {
        assertEquals("unknown ublk option 'socket-activation'; known options: [queue-depth, queues, ublk-id]",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("socket-activation", "true"))).getMessage());
        assertEquals("unknown ublk option 'max-connections'; known options: [queue-depth, queues, ublk-id]",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queues", "2", "max-connections", "1"))).getMessage());
    }
}
