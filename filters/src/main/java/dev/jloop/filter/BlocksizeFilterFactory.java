package dev.jloop.filter;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackingFile;
import dev.jloop.api.FilterFactory;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * {@code blocksize}: makes a file with alignment or size limits usable by any client, as nbdkit's
 * blocksize filter. The file below gets only requests aligned to {@code minblock} (a power of two up
 * to 64 KiB; by default the file's own logical block size), reads and writes of at most
 * {@code maxdata} bytes (default 64M) and trims and zeroes of at most {@code maxlen} bytes (default
 * 4 GiB less a block); both must be multiples of {@code minblock}. Larger requests are split; an
 * unaligned read reads the blocks around it, an unaligned write or zeroing reads, changes and writes
 * back the blocks at its edges. Sizes take K, M and G (powers of 1024).
 *
 * <p>What differs from nbdkit: the unaligned edges of a trim are zeroed, not left alone, since jloop
 * punches holes to write zeroes too and a punched range must read as zeros; and the size is not
 * rounded down to {@code minblock}: a last, partial block is read short and written no further than
 * the file ends. The filter declares {@code minblock} as its logical block size, which jloop's
 * frontends take as the preferred one (NBD's preferred block size, ublk's logical block), as nbdkit
 * advertises it; the minimum NBD clients see stays 1, so any client may send any request.
 *
 * <p>Requests are split one piece after another, never more at once on the file below than arrive
 * at the filter. A write's edges hold their block so that no other write, trim or zeroing lands
 * between the read and the write-back; requests that must wait for a block are queued, not a thread.
 */
public final class BlocksizeFilterFactory
        implements FilterFactory
{
    static final String MINBLOCK = "minblock";
    static final String MAXDATA = "maxdata";
    static final String MAXLEN = "maxlen";

    /** As nbdkit: an edge is one block in a bounce buffer, and more than this is no longer a block. */
    static final int MAX_MINBLOCK = 64 << 10;
    private static final long DEFAULT_MAXDATA = 64 << 20;
    /** NBD's lengths are 32 bits. */
    private static final long DEFAULT_MAXLEN = 0xffff_ffffL;

    @Override
    public String name()
    {
        return "blocksize";
    }

    @Override
    public String description()
    {
        return "aligns requests to a block size and splits large ones, for a file that takes no others";
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(MINBLOCK, PluginOption.Type.SIZE, null, "the alignment the file below needs, a power of two up to 64K (default: its logical block size)",
                        "--filter blocksize:minblock=4K"),
                PluginOption.of(MAXDATA, PluginOption.Type.SIZE, "64M", "the largest read or write the file below gets", "--filter blocksize:maxdata=32M"),
                PluginOption.of(MAXLEN, PluginOption.Type.SIZE, null, "the largest trim or zeroing the file below gets (default 4G less a block)",
                        "--filter blocksize:maxlen=1G"));
    }

    @Override
    public void validate(Map<String, String> options)
    {
        settings(options);
    }

    @Override
    public BackingFile wrap(BackingFile next, BackendConfig export, Map<String, String> options)
            throws IOException
    {
        Settings settings = settings(options);
        int below = next.capabilities().logicalBlockSize();
        int minblock = Math.max(settings.minblock(), below);
        if (minblock > MAX_MINBLOCK) {
            throw new IOException("the file's logical block size is " + below + " bytes; the blocksize filter handles up to " + MAX_MINBLOCK);
        }
        // as nbdkit, a larger block from the file below rounds the limits down to it
        long maxdata = Math.max(minblock, settings.maxdata() & -minblock);
        long maxlen = Math.max(minblock, (settings.maxlen() == 0 ? DEFAULT_MAXLEN : settings.maxlen()) & -minblock);
        return new BlocksizeBackingFile(next, minblock, maxdata, maxlen);
    }

    /** {@code maxlen} 0: not given. */
    record Settings(int minblock, long maxdata, long maxlen) {}

    private Settings settings(Map<String, String> given)
    {
        PluginOptions options = PluginOptions.parse("the blocksize filter", options(), given);
        long minblock = options.size(MINBLOCK, 1);
        if (minblock < 1 || minblock > MAX_MINBLOCK || Long.bitCount(minblock) != 1) {
            throw new IllegalArgumentException("--" + MINBLOCK + ": " + minblock + " is not a power of two from 1 to 64K");
        }
        long maxdata = options.size(MAXDATA, DEFAULT_MAXDATA);
        long maxlen = options.size(MAXLEN, 0);
        for (String key : List.of(MAXDATA, MAXLEN)) {
            long value = key.equals(MAXDATA) ? maxdata : maxlen;
            if ((value == 0 && options.isSet(key)) || value % minblock != 0) {
                throw new IllegalArgumentException("--" + key + ": " + value + " is not a multiple of minblock " + minblock + " above 0");
            }
        }
        return new Settings((int) minblock, maxdata, maxlen);
    }
}
