package dev.jloop.testkit;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.ExtentSink;
import dev.jloop.api.Fallocate;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.IovecIter;

import java.io.IOException;
import java.util.Map;

/**
 * A backing file whose file does not hold the device's bytes, as an encrypting backend's: it keeps
 * every byte XORed with a key that depends on its offset, in a synchronous store that keeps bytes as
 * they are (the memory backend, which loads the file at open and writes it back at close). It keeps
 * the conformance suite honest: a suite that read the file behind the backend's back, or made a file
 * some other way than through its create hook, fails it.
 *
 * <p>The stored form works in blocks of {@value #BLOCK} bytes, the store's. A block that the store
 * reports as a hole (never written, or punched whole) reads as zeros, as the contract wants of a
 * hole; every other block holds XORed bytes. So a write or zeroing of part of a block rewrites the
 * whole block, and only whole blocks are punched in the store. One lock serialises the operations:
 * a read decodes by the store's extents, which a concurrent write could change under it.
 */
final class XorBackingFile
        extends ForwardingBackingFile
{
    static final int BLOCK = MemoryBackingFile.BLOCK_SIZE;
    /** Bytes transferred at most per call: the contract allows short transfers, and the buffers stay small. */
    private static final int MAX_TRANSFER = 1 << 20;

    private XorBackingFile(BackingFile store)
    {
        super(store);
    }

    /** XORs {@code bytes[offset, offset + length)}, which belong at {@code pos} of the device, with the key: encodes and decodes. */
    static void xor(byte[] bytes, int offset, int length, long pos)
    {
        for (int i = 0; i < length; i++) {
            bytes[offset + i] ^= key(pos + i);
        }
    }

    // Never zero, so that a stored block of zeros always is a hole, never data.
    private static byte key(long pos)
    {
        return (byte) (((pos * 0x9E3779B97F4A7C15L) >>> 56) | 1);
    }

    @Override
    public synchronized long readIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (pos < 0 || pos >= size() || iter.count() == 0) {
            // nothing to decode: the store says EINVAL, or 0 at and past the end
            return delegate().readIter(kiocb);
        }
        byte[] plain = new byte[(int) Math.min(Math.min(iter.count(), size() - pos), MAX_TRANSFER)];
        long res = readPlain(kiocb, plain, pos);
        if (res > 0) {
            iter.copyToIter(plain, 0, (int) res);
        }
        return res;
    }

    @Override
    public synchronized long writeIter(Kiocb kiocb)
    {
        IovIter iter = kiocb.iter();
        long pos = kiocb.pos();
        if (pos < 0 || iter.count() == 0 || capabilities().readOnly()) {
            // nothing to encode: the store says EINVAL, 0 or EPERM
            return delegate().writeIter(kiocb);
        }
        if (pos >= size()) {
            // the size is fixed, as the store's
            return -Errno.ENOSPC;
        }
        byte[] data = new byte[(int) Math.min(Math.min(iter.count(), size() - pos), MAX_TRANSFER)];
        iter.copyFromIter(data, 0, data.length);
        long res = writePlain(kiocb, data, pos);
        iter.revert(data.length - Math.max(0, res));
        return res;
    }

    @Override
    public synchronized long fallocate(Kiocb kiocb)
    {
        int mode = kiocb.mode();
        long offset = kiocb.pos();
        long length = kiocb.length();
        boolean punch = (mode & Fallocate.PUNCH_HOLE) != 0;
        boolean zero = (mode & Fallocate.ZERO_RANGE) != 0;
        if ((mode & ~(Fallocate.KEEP_SIZE | Fallocate.PUNCH_HOLE | Fallocate.ZERO_RANGE)) != 0 || (!punch && !zero)
                || (punch && (zero || (mode & Fallocate.KEEP_SIZE) == 0))) {
            // preallocation would make store blocks of plain zeros, which do not decode to zeros
            return -Errno.EOPNOTSUPP;
        }
        if (capabilities().readOnly()) {
            return -Errno.EPERM;
        }
        if (offset < 0 || length <= 0) {
            return -Errno.EINVAL;
        }
        if ((mode & Fallocate.KEEP_SIZE) == 0 && offset + length > size()) {
            // the size is fixed, as the store's
            return -Errno.EFBIG;
        }
        long end = Math.min(size(), offset + length);
        if (offset >= end) {
            return 0;
        }
        // whole blocks become holes of the store; the parts of blocks at either end get zeros written
        long firstWhole = (offset + BLOCK - 1) / BLOCK * BLOCK;
        long endOfWhole = end / BLOCK * BLOCK;
        long head = Math.min(end, firstWhole);
        long tail = Math.max(head, endOfWhole);
        if (head < tail) {
            long res = delegate().fallocate(new Kiocb(null).initFallocate(delegate(), Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, head, tail - head));
            if (res < 0) {
                return res;
            }
        }
        for (long[] part : new long[][] {{offset, head - offset}, {tail, end - tail}}) {
            for (long done = 0; done < part[1]; ) {
                long res = writePlain(kiocb, new byte[(int) Math.min(part[1] - done, MAX_TRANSFER)], part[0] + done);
                if (res <= 0) {
                    return res < 0 ? res : -Errno.EIO;
                }
                done += res;
            }
        }
        return 0;
    }

    /** Reads {@code plain.length} bytes at {@code pos} (fewer at the end) and decodes them. */
    private long readPlain(Kiocb kiocb, byte[] plain, long pos)
    {
        // the store answers at once (MemoryBackingFile): its own kiocb, read synchronously
        long res = delegate().readIter(new Kiocb(null).initRw(Kiocb.Op.READ, delegate(), IovecIter.of(Direction.DEST, plain), pos, 0));
        if (res <= 0) {
            return res;
        }
        long end = pos + res;
        long extents = delegate().extents(pos, res, (offset, length, type) -> {
            if ((type & ExtentSink.ZERO) == 0) {
                long from = Math.max(pos, offset);
                xor(plain, (int) (from - pos), (int) (Math.min(end, offset + length) - from), from);
            }
            return true;
        });
        return extents < 0 ? extents : res;
    }

    /**
     * Writes {@code data} at {@code pos} as whole blocks: the parts of the first and last block it
     * does not cover keep what they read as. Returns the bytes of {@code data} written.
     */
    private long writePlain(Kiocb kiocb, byte[] data, long pos)
    {
        long from = pos / BLOCK * BLOCK;
        long to = Math.min(size(), (pos + data.length + BLOCK - 1) / BLOCK * BLOCK);
        byte[] blocks = new byte[(int) (to - from)];
        long res = readPlain(kiocb, blocks, from);
        if (res < blocks.length) {
            // a short read of the store would write back zeros over the rest of the blocks
            return res < 0 ? res : -Errno.EIO;
        }
        System.arraycopy(data, 0, blocks, (int) (pos - from), data.length);
        xor(blocks, 0, blocks.length, from);
        res = delegate().writeIter(new Kiocb(null).initRw(Kiocb.Op.WRITE, delegate(), IovecIter.of(Direction.SOURCE, blocks), from, 0));
        if (res < 0) {
            return res;
        }
        return Math.min(data.length, Math.max(0, from + res - pos));
    }

    /** Backend {@code xor}: {@link XorBackingFile} over the memory backend. Backend options are ignored. */
    static final class Factory
            implements BackendFactory
    {
        @Override
        public String name()
        {
            return "xor";
        }

        @Override
        public String description()
        {
            return "the device's bytes XORed with a key, in a file the memory backend loads and writes back (tests)";
        }

        @Override
        public BackingFile open(BackendConfig config)
                throws IOException
        {
            BackendConfig store = new BackendConfig(config.path(), config.readOnly(), config.direct(), config.queueDepth(), Map.of());
            return new XorBackingFile(new MemoryBackendFactory().open(store));
        }
    }
}
