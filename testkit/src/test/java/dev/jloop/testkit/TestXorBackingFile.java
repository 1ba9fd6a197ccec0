package dev.jloop.testkit;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ThreadModel;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.NavigableMap;

/**
 * The conformance suite on {@link XorBackingFile}, a backend whose file does not hold the device's
 * bytes: it passes once it says how its files are made and read back ({@link #createFile} and
 * {@link #readFile}), and overrides nothing else of the suite.
 */
public class TestXorBackingFile
        extends AbstractBackingFileTest
{
    private static final int BLOCK = XorBackingFile.BLOCK;

    @Override
    protected BackendFactory factory()
    {
        return new XorBackingFile.Factory();
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        // the store's, the memory backend's
        return Capabilities.builder()
                .flush(true).nativeFua(true).trim(true).zero(true).extents(true).multiConn(true)
                .threadModel(ThreadModel.PARALLEL)
                .build();
    }

    @Override
    protected boolean holesFromFileSystem()
    {
        return false;
    }

    /** Writes every block that holds data XORed, whole; the other blocks stay holes, which read as zeros. */
    @Override
    protected Path createFile(String name, long size, NavigableMap<Long, byte[]> data)
            throws IOException
    {
        Path path = dir.resolve(name);
        try (RandomAccessFile file = new RandomAccessFile(path.toFile(), "rw")) {
            file.setLength(size);
            for (long block = 0; block < size; block += BLOCK) {
                byte[] plain = new byte[(int) Math.min(BLOCK, size - block)];
                boolean written = false;
                for (Map.Entry<Long, byte[]> range : data.headMap(block + plain.length, false).entrySet()) {
                    long from = Math.max(block, range.getKey());
                    long to = Math.min(block + plain.length, range.getKey() + range.getValue().length);
                    if (from < to) {
                        System.arraycopy(range.getValue(), (int) (from - range.getKey()), plain, (int) (from - block), (int) (to - from));
                        written = true;
                    }
                }
                if (written) {
                    XorBackingFile.xor(plain, 0, plain.length, block);
                    file.seek(block);
                    file.write(plain);
                }
            }
        }
        return path;
    }

    /** Decodes the blocks that hold data; a block of zeros is a hole. */
    @Override
    protected byte[] readFile(Path path)
            throws IOException
    {
        byte[] bytes = Files.readAllBytes(path);
        for (int block = 0; block < bytes.length; block += BLOCK) {
            int length = Math.min(BLOCK, bytes.length - block);
            if (!isZero(bytes, block, length)) {
                XorBackingFile.xor(bytes, block, length, block);
            }
        }
        return bytes;
    }

    private static boolean isZero(byte[] bytes, int offset, int length)
    {
        for (int i = offset; i < offset + length; i++) {
            if (bytes[i] != 0) {
                return false;
            }
        }
        return true;
    }
}
