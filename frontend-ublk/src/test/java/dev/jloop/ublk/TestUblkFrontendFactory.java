package dev.jloop.ublk;

import dev.jloop.api.FrontendFactory;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Map;
import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestUblkFrontendFactory
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
        assertTrue(set.userRecovery(), "user recovery unless --no-recovery");
        assertFalse(set.recover());

        UblkServer.Config recover = UblkFrontendFactory.config(Map.of("recover", "4"));
        assertEquals(4, recover.devId());
        assertTrue(recover.recover());
        assertEquals(4, UblkFrontendFactory.config(Map.of("recover", "4", "ublk-id", "4")).devId());
        assertFalse(UblkFrontendFactory.config(Map.of("no-recovery", "true")).userRecovery());
    }

    @Test
    void badOptions()
    {
        assertEquals("--queues: bad number 'x': expected a whole number, 0 or more (e.g. --frontend ublk --queues 2 disk.img)",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queues", "x"))).getMessage());
        assertEquals("ublk queue depth must be from 1 to 4096: 0",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queue-depth", "0"))).getMessage());
        assertEquals("--ublk-id: bad number '-3': expected a whole number, 0 or more (e.g. --frontend ublk --ublk-id 3 disk.img)",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("ublk-id", "-3"))).getMessage());
    }

    @Test
    void recoverOptionsThatContradict()
    {
        assertEquals("--recover 4 and --ublk-id 5 name two devices",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("recover", "4", "ublk-id", "5"))).getMessage());
        assertEquals("--recover and --no-recovery exclude each other",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("recover", "4", "no-recovery", "true"))).getMessage());
    }

    @Test
    void unknownOptionsAreRefused()
    {
        assertEquals("the ublk frontend takes no option 'socket-activation'; it takes: no-recovery, queue-depth, queues, recover, ublk-id",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("socket-activation", "true"))).getMessage());
        assertEquals("the ublk frontend takes no option 'max-connections'; it takes: no-recovery, queue-depth, queues, recover, ublk-id",
                assertThrows(IOException.class, () -> UblkFrontendFactory.config(Map.of("queues", "2", "max-connections", "1"))).getMessage());
    }
}
