package dev.jloop.examples.xor;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ThreadModel;
import dev.jloop.testkit.AbstractBackingFileTest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.NavigableMap;

/**
 * jloop's conformance suite on the xor backend. Its file does not hold the device's bytes as they
 * are, so it says how the suite makes a file ({@link #createFile}) and reads one back
 * ({@link #readFile}); it overrides nothing else of the suite.
 */
public class TestXorBackingFile
        extends AbstractBackingFileTest
{
    private static final XorKey KEY = XorKey.parse("0x5a17c3");

    @Override
    protected BackendFactory factory()
    {
        return new XorBackendFactory();
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of(XorBackendFactory.KEY, KEY.toString());
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        return Capabilities.builder()
                .flush(true)
                .multiConn(true)
                .threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS)
                .build();
    }

    /** Every byte written, XORed: a hole would read back as the key. */
    @Override
    protected Path createFile(String name, long size, NavigableMap<Long, byte[]> data)
            throws IOException
    {
        byte[] content = new byte[Math.toIntExact(size)];
        for (Map.Entry<Long, byte[]> range : data.entrySet()) {
            System.arraycopy(range.getValue(), 0, content, Math.toIntExact(range.getKey()), range.getValue().length);
        }
        KEY.apply(content, 0, content.length, 0);
        return Files.write(dir.resolve(name), content, StandardOpenOption.CREATE_NEW);
    }

    @Override
    protected byte[] readFile(Path path)
            throws IOException
    {
        byte[] bytes = Files.readAllBytes(path);
        KEY.apply(bytes, 0, bytes.length, 0);
        return bytes;
    }
}
