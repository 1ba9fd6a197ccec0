package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import dev.jloop.testkit.MemoryBackingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;

import static dev.jloop.filter.Requests.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the blocksize filter makes of requests a strict file would refuse. */
class TestBlocksizeFilter
{
    private final Requests requests = new Requests();

    @AfterEach
    void nothingLeft()
    {
        requests.assertIdle();
    }

    @Test
    void oddRequestsReachAStrictFileAlignedAndKeepTheirData()
            throws Exception
    {
        int size = 2 << 20;
        Random random = new Random(21);
        byte[] model = new byte[size];
        random.nextBytes(model);
        MemoryBackingFile memory = new MemoryBackingFile(size);
        memory.write(0, model);
        StrictBackingFile strict = new StrictBackingFile(memory);
        BackingFile file = wrap(strict, Map.of("maxlen", "64K", "maxdata", "64K"));
        assertEquals(4096, file.capabilities().logicalBlockSize(), "minblock defaults to the file's logical block");
        assertEquals(size, file.size());

        for (int i = 0; i < 300; i++) {
            long pos = random.nextInt(size);
            int length = (int) Math.min(size - pos, 1 + random.nextInt(random.nextBoolean() ? 5000 : 200_000));
            switch (random.nextInt(4)) {
                case 0 -> {
                    byte[] data = new byte[length];
                    random.nextBytes(data);
                    assertEquals(length, requests.write(file, pos, data, 0), "write of " + length + " at " + pos);
                    System.arraycopy(data, 0, model, (int) pos, length);
                }
                case 1 -> {
                    int mode = random.nextBoolean() ? Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE : Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE;
                    assertEquals(0, requests.fallocate(file, mode, pos, length), "fallocate " + mode + " of " + length + " at " + pos);
                    Arrays.fill(model, (int) pos, (int) pos + length, (byte) 0);
                }
                default -> {
                    byte[] read = new byte[length];
                    assertEquals(length, requests.read(file, pos, read), "read of " + length + " at " + pos);
                    assertArrayEquals(Arrays.copyOfRange(model, (int) pos, (int) pos + length), read, "read of " + length + " at " + pos);
                }
            }
        }
        byte[] whole = new byte[size];
        memory.read(0, whole);
        assertArrayEquals(model, whole);
        assertEquals(0, strict.refused(), "requests the strict file refused, of " + strict.requests());
        assertTrue(strict.requests() > 300);
    }

    @Test
    void writesSharingABlockInFlightTogetherAllLand()
            throws Exception
    {
        // three completion threads: without the block held from read to write-back, edges overwrite one another
        MemoryBackingFile memory = MemoryBackingFile.builder(64 << 10).queued(3).build();
        BackingFile file = wrap(new StrictBackingFile(memory), Map.of());
        Random random = new Random(22);
        for (int round = 0; round < 20; round++) {
            byte[] expected = new byte[64 << 10];
            memory.read(0, expected);
            List<CompletableFuture<Long>> writes = new ArrayList<>();
            // disjoint unaligned writes, 24 of them to each of blocks 0 to 3
            for (int i = 0; i < 96; i++) {
                byte[] data = new byte[100 + random.nextInt(60)];
                random.nextBytes(data);
                int pos = 300 + i * 170;
                writes.add(requests.startWrite(file, pos, data));
                System.arraycopy(data, 0, expected, pos, data.length);
            }
            // a whole block written while an unaligned write changes 20 bytes in it: the rest of the block must be the whole write's
            byte[] whole = new byte[4096];
            random.nextBytes(whole);
            writes.add(requests.startWrite(file, 8 * 4096, whole));
            byte[] part = new byte[20];
            random.nextBytes(part);
            writes.add(requests.startWrite(file, 8 * 4096 + 1000, part));
            System.arraycopy(whole, 0, expected, 8 * 4096, 4096);
            for (CompletableFuture<Long> write : writes) {
                assertTrue(await(write) > 0);
            }
            byte[] actual = new byte[64 << 10];
            memory.read(0, actual);
            for (int i = 0; i < 20; i++) {
                int at = 8 * 4096 + 1000 + i;
                assertTrue(actual[at] == whole[1000 + i] || actual[at] == part[i], "byte " + at + " is neither write's");
                actual[at] = expected[at];
            }
            assertArrayEquals(expected, actual, "round " + round);
        }
        memory.close();
    }

    @Test
    void aRequestOfThousandsOfPiecesOverAFileThatAnswersAtOnceDoesNotNest()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(16 << 20);
        BackingFile file = wrap(memory, Map.of("maxdata", "1K"));
        byte[] data = new byte[16 << 20];
        new Random(23).nextBytes(data);
        assertEquals(data.length, requests.write(file, 0, data, 0));
        byte[] read = new byte[data.length];
        assertEquals(data.length, requests.read(file, 0, read));
        assertArrayEquals(data, read);
    }

    @Test
    void aFileEndingInsideABlockIsReadAndWrittenUpToItsEnd()
            throws Exception
    {
        // the memory file refuses to grow (ENOSPC), so a write-back past its end would fail
        MemoryBackingFile memory = new MemoryBackingFile(10_000);
        BackingFile file = wrap(memory, Map.of("minblock", "4K"));
        assertEquals(10_000, file.size(), "the size is not rounded down");
        byte[] data = new byte[30];
        Arrays.fill(data, (byte) 7);
        assertEquals(30, requests.write(file, 9970, data, 0));
        byte[] read = new byte[100];
        assertEquals(50, requests.read(file, 9950, read), "a read across the end is short");
        assertEquals(7, read[49]);
        assertEquals(0, read[19]);
        assertEquals(0, requests.fallocate(file, Fallocate.ZERO_RANGE | Fallocate.KEEP_SIZE, 9980, 5000));
        byte[] tail = new byte[30];
        memory.read(9970, tail);
        byte[] expected = new byte[30];
        Arrays.fill(expected, 0, 10, (byte) 7);
        assertArrayEquals(expected, tail);
    }

    @Test
    void aPieceThatFailsEndsTheRequestShortAfterThoseThatWorked()
            throws Exception
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        BackingFile failing = new ForwardingBackingFile(new StrictBackingFile(memory))
        {
            @Override
            public long writeIter(Kiocb kiocb)
            {
                return kiocb.pos() + kiocb.iter().count() > 64 << 10 ? -Errno.EIO : super.writeIter(kiocb);
            }
        };
        BackingFile file = wrap(failing, Map.of("maxdata", "16K"));
        byte[] data = new byte[100_000];
        Arrays.fill(data, (byte) 5);
        // pieces: [1000, 4096) by read-modify-write, then 16 KiB each from 4096; the one at 53248 reaches past 64 KiB
        assertEquals(53_248 - 1000, requests.write(file, 1000, data, 0), "what went before the failing piece");
        assertEquals(-Errno.EIO, requests.write(file, 64 << 10, data, 0), "the failing piece first: its error");
        assertEquals(-Errno.EIO, requests.write(file, (64 << 10) + 10, new byte[10], 0), "a failing write-back");
        byte[] written = new byte[64 << 10];
        memory.read(0, written);
        assertEquals(0, written[999]);
        assertEquals(5, written[1000]);
        assertEquals(5, written[53_247]);
        assertEquals(0, written[53_248]);
    }

    @Test
    void optionsAreChecked()
            throws IOException
    {
        BlocksizeFilterFactory factory = new BlocksizeFilterFactory();
        assertEquals("--minblock: 3 is not a power of two from 1 to 64K",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("minblock", "3"))).getMessage());
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("minblock", "128K")));
        assertEquals("--maxdata: 1000 is not a multiple of minblock 512 above 0",
                assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("minblock", "512", "maxdata", "1000"))).getMessage());
        assertThrows(IllegalArgumentException.class, () -> factory.validate(Map.of("maxlen", "0")));
        BackingFile file = wrap(new MemoryBackingFile(1 << 20), Map.of("minblock", "512"));
        assertEquals(512, file.capabilities().logicalBlockSize());
        assertEquals(4096, wrap(new StrictBackingFile(new MemoryBackingFile(1 << 20)), Map.of("minblock", "512", "maxdata", "6K")).capabilities().logicalBlockSize(),
                "the file's larger block wins");
    }

    private static BackingFile wrap(BackingFile below, Map<String, String> options)
            throws IOException
    {
        return new BlocksizeFilterFactory().wrap(below, BackendConfig.of(Path.of("disk")), options);
    }
}
