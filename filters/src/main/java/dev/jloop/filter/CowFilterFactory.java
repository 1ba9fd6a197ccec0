package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * {@code cow}: copy-on-write, as nbdkit's cow filter. The file below is opened read-only and never
 * written; writes, trims and zeroes go to an overlay file, and reads come from the overlay where a
 * block was written there, else from below. So a client may change a disk that must stay as it is
 * (a golden image, a read-only file, a backup being inspected), and the changes can be kept, thrown
 * away, or merged into the file later.
 *
 * <p>Blocks. The overlay is kept in blocks of {@code cow-block-size} (a power of two from 4K to 16M,
 * default 64K). Writing part of a block first copies the whole block into the overlay (from below,
 * or zeros); trimming or zeroing whole blocks only marks them, and they then read as zeros, not as
 * the data below. Extents (NBD block status) report blocks in the overlay as data, zeroed blocks as
 * holes, and the rest as the file below reports it.
 *
 * <p>Keeping the overlay. Without {@code cow-file} the overlay is a temporary file in
 * {@code $TMPDIR} (else {@code /var/tmp}), deleted from the start and gone when jloop stops. With
 * {@code cow-file=PATH} it is kept in {@code PATH} (sparse, block {@code i} at offset
 * {@code i * blockSize}) and its block map in {@code PATH.map} (a 32-byte header, then one byte per
 * block), so that a later {@code jloop serve --filter cow --cow-file PATH FILE} continues where it
 * left off (with the block size it was made with) and {@code jloop commit --cow-file PATH FILE}
 * writes the changes into {@code FILE} and removes the overlay. Only one jloop uses an overlay at a
 * time: its map is locked while open. The file below must not change while it has an overlay.
 *
 * <p>Durability. A flush (and a FUA write, as a write then a flush) makes the overlay durable, then
 * its block map: what was written before an acknowledged flush survives a crash, and a crash loses
 * at most the writes after it. With {@code --read-only} the overlay is only read: a kept one can be
 * served read-only to look at it.
 *
 * <p>Examples: {@code jloop serve --filter cow base.img} (changes thrown away at exit);
 * {@code jloop serve --filter cow --cow-file base.overlay base.img}, then
 * {@code jloop commit --cow-file base.overlay base.img}. Unlike nbdkit's filter there is no
 * {@code cow-on-read} or {@code cow-on-cache}, and zeroing a block that was written does not give its
 * space in the overlay file back (the block map marks it; the space is reused when the block is
 * written again).
 */
public final class CowFilterFactory
        implements FilterFactory
{
    static final String FILE = "cow-file";
    static final String BLOCK_SIZE = "cow-block-size";
    static final int DEFAULT_BLOCK_SIZE = 64 * 1024;

    @Override
    public String name()
    {
        return "cow";
    }

    @Override
    public String description()
    {
        return "copy-on-write: writes go to an overlay, the file is opened read-only and never written";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(FILE, PluginOption.Type.PATH, null,
                        "keep the overlay in PATH (its block map in PATH.map) to continue it later or merge it with jloop commit; "
                                + "without it the overlay is temporary",
                        "--filter cow --cow-file disk.overlay"),
                PluginOption.of(BLOCK_SIZE, PluginOption.Type.SIZE, "64K",
                        "the overlay's unit, a power of two from 4K to 16M: writing part of a block copies the whole block first",
                        "--filter cow --cow-block-size 256K"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        settings(options);
    }

    /** The file below is only ever read. */
    @Override
    public BackendConfig configureBackend(BackendConfig config, Map<String, String> options)
    {
        return config.withReadOnly(true);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
            throws IOException
    {
        Settings settings = settings(options);
        long size = next.size();
        if (size < 0) {
            throw new IOException("the file below reports no size: " + Errno.name(size));
        }
        CowOverlay overlay = settings.file() == null
                ? CowOverlay.temporary(temporaryDirectory(), size, settings.blockSize(), FileChannel::open)
                : CowOverlay.open(settings.file(), size, settings.blockSize(), settings.blockSizeGiven(), FileChannel::open);
        return new CowBackingFile(next, overlay, export.readOnly(), export.path().getFileName().toString());
    }

    record Settings(Path file, int blockSize, boolean blockSizeGiven) {}

    private Settings settings(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the cow filter", options(), given);
        long blockSize = options.size(BLOCK_SIZE, DEFAULT_BLOCK_SIZE);
        try {
            CowOverlay.checkBlockSize(blockSize);
        }
        catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--" + BLOCK_SIZE + ": " + e.getMessage(), e);
        }
        return new Settings(options.path(FILE), (int) blockSize, given.containsKey(BLOCK_SIZE));
    }

    /** As nbdkit's: {@code $TMPDIR}, else {@code /var/tmp}, which unlike {@code /tmp} is seldom in memory. */
    private static Path temporaryDirectory()
    {
        String tmpdir = System.getenv("TMPDIR");
        if (tmpdir != null && !tmpdir.isEmpty()) {
            return Path.of(tmpdir);
        }
        Path varTmp = Path.of("/var/tmp");
        return Files.isDirectory(varTmp) && Files.isWritable(varTmp) ? varTmp : Path.of(System.getProperty("java.io.tmpdir"));
    }
}
