package dev.jloop.dist;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

class TestUblkCommands
{
    @Test
    void recordedServeArgumentsAreServedAgain()
    {
        String recorded = String.join("\n", "--frontend", "ublk", "--backend", "io_uring:uring-sqpoll", "--queues", "2", "/srv/disk.img");
        assertEquals(List.of("--frontend", "ublk", "--backend", "io_uring:uring-sqpoll", "--queues", "2", "/srv/disk.img"),
                UblkCommands.Recover.serveArguments(recorded, null));
        assertEquals(List.of("--backend", "nio", "--frontend", "ublk", "--queues", "2", "/srv/disk.img"),
                UblkCommands.Recover.serveArguments(recorded, "nio"));
        assertEquals(List.of("--backend", "sync", "--frontend", "ublk", "/srv/disk.img"),
                UblkCommands.Recover.serveArguments(String.join("\n", "--backend=nio", "--frontend", "ublk", "--recover", "0", "/srv/disk.img"), "sync"));
        assertEquals(List.of("--frontend", "ublk", "a file"),
                UblkCommands.Recover.serveArguments(String.join("\n", "--recover=3", "--frontend", "ublk", "a file"), null));
        assertEquals(List.of(), UblkCommands.Recover.serveArguments("", null));
    }
}
