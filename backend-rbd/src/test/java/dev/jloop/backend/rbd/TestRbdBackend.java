package dev.jloop.backend.rbd;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.IovIter.Kind;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.testkit.AbstractBackingFileTest;
import dev.jloop.testkit.CephCluster;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The backend conformance suite against real RBD images of a one-node Ceph cluster. Images are made
 * with {@code rbd import} and looked into with {@code rbd export}: another librbd client than the
 * one under test.
 */
public class TestRbdBackend
        extends AbstractBackingFileTest
{
    private static final AtomicInteger IMAGES = new AtomicInteger();

    private CephCluster cluster;

    @BeforeEach
    public void startCluster()
    {
        cluster = CephCluster.assumeShared();
    }

    @Override
    protected BackendFactory factory()
    {
        return new RbdBackendFactory();
    }

    @Override
    protected Map<String, String> options()
    {
        return Map.of(RbdBackendFactory.CONF, cluster.conf().toString());
    }

    @Override
    protected boolean holesFromFileSystem()
    {
        return false;
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        return Capabilities.builder()
                .readOnly(false).flush(true).nativeFua(false).trim(true).zero(true).extents(true).multiConn(true).cache(false)
                .threadModel(ThreadModel.PARALLEL).logicalBlockSize(1).queueDepth(queueDepth())
                .build();
    }

    /**
     * An image of the test's pool, made by {@code rbd import} from a sparse file holding {@code data}.
     * Its objects are 4 KiB: RBD tells allocation per object (an object that holds any data is data up
     * to its last written byte), and the suite's holes are 4 KiB blocks.
     */
    @Override
    protected Path createFile(String name, long size, NavigableMap<Long, byte[]> data)
            throws IOException
    {
        String image = CephCluster.POOL + "/conformance-" + ProcessHandle.current().pid() + "-" + IMAGES.incrementAndGet() + "-" + name;
        if (size == 0) {
            // rbd import cannot tell the size of an empty file
            cluster.rbd("create", "--size", "0", "--object-size", "4K", image);
            return Path.of(image);
        }
        Path local = dir.resolve(name + ".import");
        try (FileChannel channel = FileChannel.open(local, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            for (Map.Entry<Long, byte[]> range : data.entrySet()) {
                ByteBuffer buffer = ByteBuffer.wrap(range.getValue());
                while (buffer.hasRemaining()) {
                    channel.write(buffer, range.getKey() + buffer.position());
                }
            }
        }
        try (RandomAccessFile file = new RandomAccessFile(local.toFile(), "rw")) {
            file.setLength(Math.max(size, file.length()));
        }
        cluster.rbd("import", "--no-progress", "--object-size", "4K", local.toString(), image);
        Files.delete(local);
        return Path.of(image);
    }

    /** The image has no watcher left once closed: the handle and the cluster connection are gone. */
    @Test
    public void closeReleasesTheImage()
            throws Exception
    {
        Path image = createFile("watchers", randomBytes(new Random(30), 64 * 1024));
        try (BackingFile file = open(image, false)) {
            assertTrue(cluster.rbd("status", "--format", "json", image.toString()).contains("\"address\""), "an open image has a watcher");
            assertEquals(64 * 1024, file.size(), "size of the image");
        }
        assertEquals("{\"watchers\":[]}", cluster.rbd("status", "--format", "json", image.toString()).strip(), "watchers after close");
    }

    /** A snapshot is served read-only, with the data it was taken with. */
    @Test
    public void snapshotIsReadOnly()
            throws Exception
    {
        byte[] content = randomBytes(new Random(31), 128 * 1024);
        Path image = createFile("snapped", content);
        cluster.rbd("snap", "create", image + "@one");
        try (BackingFile file = open(image, false)) {
            writeFully(file, Kind.BVEC, 0, new byte[BLOCK], true);
        }
        try (BackingFile snapshot = open(Path.of(image + "@one"), false)) {
            assertTrue(snapshot.capabilities().readOnly(), "a snapshot opened read-write declares read-only: " + snapshot.capabilities());
            assertArrayEquals(content, readFully(snapshot, Kind.KVEC, 0, content.length, true), "the snapshot holds the data from before the write");
            try (IoBuf buf = new IoBuf(Kind.BVEC, BLOCK, true, new Random(32))) {
                assertEquals(-Errno.EPERM, submitRw(Kiocb.Op.WRITE, snapshot, buf.iter(Direction.SOURCE), 0), "write to a snapshot");
            }
        }
    }

    /** A missing image is named in the error, and not created. */
    @Test
    public void openingAMissingImageNamesIt()
            throws Exception
    {
        String missing = CephCluster.POOL + "/missing-" + ProcessHandle.current().pid();
        IOException e = assertThrows(IOException.class, () -> open(Path.of(missing), false));
        assertTrue(e.getMessage().contains(missing + ": no such image"), "the message names the image: " + e.getMessage());
        assertFalse(cluster.rbd("ls", CephCluster.POOL).contains("missing-"), "opening a missing image created it");
        e = assertThrows(IOException.class, () -> open(Path.of("no-pool-here/image"), false));
        assertTrue(e.getMessage().contains("rados_ioctx_create(no-pool-here)"), "the message names the pool: " + e.getMessage());
    }

    /** {@code create} makes a missing image, grows a smaller one and never shrinks one. */
    @Test
    public void createMakesGrowsAndNeverShrinks()
            throws Exception
    {
        Path image = Path.of(CephCluster.POOL + "/created-" + ProcessHandle.current().pid() + "-" + IMAGES.incrementAndGet());
        BackendConfig config = new BackendConfig(image, false, false, 64, options());
        factory().create(config, 1 << 20);
        try (BackingFile file = open(image, false)) {
            assertEquals(1 << 20, file.size(), "size of a created image");
            writeFully(file, Kind.BVEC, (1 << 20) - BLOCK, randomBytes(new Random(33), BLOCK), true);
        }
        factory().create(config, 2 << 20);
        factory().create(config, 1 << 19);
        try (BackingFile file = open(image, false)) {
            assertEquals(2 << 20, file.size(), "grown to 2 MiB, then not shrunk to 512 KiB");
            assertArrayEquals(randomBytes(new Random(33), BLOCK), readFully(file, Kind.KVEC, (1 << 20) - BLOCK, BLOCK, true), "data kept across the growth");
        }
        IOException e = assertThrows(IOException.class, () -> factory().create(new BackendConfig(Path.of(image + "@snap"), false, false, 64, options()), 1 << 20));
        assertTrue(e.getMessage().contains("snapshot"), e.getMessage());
    }

    /** What {@code rbd export} reads from the image. */
    @Override
    protected byte[] readFile(Path path)
            throws IOException
    {
        Path local = dir.resolve("export-" + IMAGES.incrementAndGet());
        cluster.rbd("export", "--no-progress", path.toString(), local.toString());
        byte[] content = Files.readAllBytes(local);
        Files.delete(local);
        return content;
    }
}
