package dev.jloop.examples.xor;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.PluginOption;
import dev.jloop.iter.IovecIter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the xor backend declares, and that it stores the bytes XORed with the key. */
public class TestXorBackendFactory
{
    @TempDir
    Path dir;

    @Test
    public void foundByServiceLoaderUnderItsName()
    {
        assertTrue(ServiceLoader.load(BackendFactory.class).stream().anyMatch(provider -> provider.get().name().equals("xor")));
    }

    @Test
    public void declaresItsKeyAndStaysOutOfAuto()
    {
        BackendFactory factory = new XorBackendFactory();
        List<PluginOption> options = factory.options();
        assertEquals(1, options.size());
        assertEquals("xor-key", options.get(0).key());
        assertEquals(PluginOption.Type.STRING, options.get(0).type());
        assertEquals(null, options.get(0).defaultValue());
        assertTrue(factory.autoPriority() < 0);
    }

    @Test
    public void keysAreWholeBytesInHex()
    {
        byte[] bytes = {0, 0, 0, 0};
        XorKey.parse("0x5a17").apply(bytes, 0, 4, 1);
        assertArrayEquals(new byte[] {0x17, 0x5a, 0x17, 0x5a}, bytes);
        assertEquals("0x5a17c3", XorKey.parse(" 5A17c3 ").toString());
        for (String bad : List.of("", "0x", "0x5", "zz", "0x5g")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> XorKey.parse(bad), bad);
            assertTrue(e.getMessage().contains("such as 0x5a"), e.getMessage());
        }
    }

    @Test
    public void theFileHoldsTheBytesXoredWithTheKey()
            throws IOException
    {
        Path path = dir.resolve("disk.img");
        Files.write(path, new byte[16]);
        byte[] data = "hello, jloop".getBytes(StandardCharsets.UTF_8);
        try (BackingFile file = new XorBackendFactory().open(config(path, false, Map.of("xor-key", "0x5a17c3")))) {
            IovIter source = IovecIter.of(Direction.SOURCE, data.clone());
            assertEquals(data.length, file.writeIter(new Kiocb(null).initRw(Kiocb.Op.WRITE, file, source, 3, 0)));
            assertEquals(0, source.count());

            byte[] back = new byte[data.length];
            IovIter dest = IovecIter.of(Direction.DEST, back);
            assertEquals(data.length, file.readIter(new Kiocb(null).initRw(Kiocb.Op.READ, file, dest, 3, 0)));
            assertArrayEquals(data, back);
            assertEquals(16, file.size());
        }
        byte[] stored = Files.readAllBytes(path);
        byte[] key = {0x5a, 0x17, (byte) 0xc3};
        for (int i = 0; i < stored.length; i++) {
            // the key runs from the file's offset 0; the bytes not written are as they were
            boolean written = i >= 3 && i < 3 + data.length;
            assertEquals(written ? (byte) (data[i - 3] ^ key[i % 3]) : 0, stored[i], "byte " + i);
        }
    }

    @Test
    public void sizeMakesTheAddedRangeReadAsZeros()
            throws IOException
    {
        Path path = dir.resolve("new.img");
        XorBackendFactory factory = new XorBackendFactory();
        BackendConfig config = config(path, false, Map.of("xor-key", "0x5a17c3"));
        factory.create(config, 100_000);
        assertEquals(100_000, Files.size(path));
        assertArrayEquals(new byte[100_000], readAll(factory, config, 100_000));

        byte[] stored = Files.readAllBytes(path);
        assertEquals((byte) 0x5a, stored[0]);
        assertEquals((byte) 0xc3, stored[99_998]);

        // growing keeps what is there
        Files.write(path, new byte[] {1, 2, 3}, StandardOpenOption.WRITE);
        factory.create(config, 200_000);
        byte[] grown = readAll(factory, config, 200_000);
        assertEquals(1 ^ 0x5a, grown[0]);
        assertArrayEquals(new byte[200_000 - 3], Arrays.copyOfRange(grown, 3, 200_000));
    }

    private static byte[] readAll(BackendFactory factory, BackendConfig config, int size)
            throws IOException
    {
        byte[] bytes = new byte[size];
        try (BackingFile file = factory.open(config)) {
            IovIter dest = IovecIter.of(Direction.DEST, bytes);
            assertEquals(size, file.readIter(new Kiocb(null).initRw(Kiocb.Op.READ, file, dest, 0, 0)));
        }
        return bytes;
    }

    @Test
    public void aReadOnlyFileRefusesWrites()
            throws IOException
    {
        Path path = dir.resolve("ro.img");
        Files.write(path, new byte[8]);
        try (BackingFile file = new XorBackendFactory().open(config(path, true, Map.of("xor-key", "5a")))) {
            IovIter source = IovecIter.of(Direction.SOURCE, new byte[4]);
            assertEquals(-Errno.EPERM, file.writeIter(new Kiocb(null).initRw(Kiocb.Op.WRITE, file, source, 0, 0)));
        }
        assertArrayEquals(new byte[8], Files.readAllBytes(path));
    }

    @Test
    public void mistakesAreRefusedWithWhatToDo()
            throws IOException
    {
        Path path = dir.resolve("disk.img");
        Files.write(path, new byte[8]);
        XorBackendFactory factory = new XorBackendFactory();
        assertMessage(IOException.class, "add --xor-key", () -> factory.open(config(path, false, Map.of())));
        assertMessage(IOException.class, "such as 0x5a", () -> factory.open(config(path, false, Map.of("xor-key", "0x5"))));
        assertMessage(IllegalArgumentException.class, "takes no option 'uring-sqpoll'",
                () -> factory.open(config(path, false, Map.of("xor-key", "5a", "uring-sqpoll", "true"))));
        assertMessage(IOException.class, "drop --direct",
                () -> factory.open(new BackendConfig(path, false, true, 64, Map.of("xor-key", "5a"))));
        assertMessage(IOException.class, "no such file", () -> factory.open(config(dir.resolve("missing.img"), false, Map.of("xor-key", "5a"))));
    }

    private static BackendConfig config(Path path, boolean readOnly, Map<String, String> options)
    {
        return new BackendConfig(path, readOnly, false, 64, options);
    }

    private static void assertMessage(Class<? extends Exception> type, String part, Executable open)
    {
        Exception e = assertThrows(type, open);
        assertTrue(e.getMessage().contains(part), e.getMessage());
    }
}
