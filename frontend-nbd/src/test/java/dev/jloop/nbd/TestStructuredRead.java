package dev.jloop.nbd;

import dev.jloop.api.Errno;
import dev.jloop.iter.PagePool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_OFFSET_HOLE;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A structured READ as a unit: planned from a fake device's extents, read into pool pages, encoded into bytes. */
class TestStructuredRead
{
    private static final int KIB = 1024;
    private static final long OFFSET = 1 << 20;

    private final MemoryBlockDevice device = new MemoryBlockDevice(16 << 20, MemoryBlockDevice.allCapabilities());
    private final PagePool pagePool = new PagePool(16 << 20);
    private final NbdRequest request = new NbdRequest();
    private final KnownData known = new KnownData();

    @AfterEach
    void tearDown()
    {
        if (request.nrPages > 0) {
            pagePool.free(request.pages, request.nrPages);
        }
        pagePool.close();
    }

    @Test
    void aFragmentedReadKeepsItsLastChunkForTheRest()
            throws InterruptedException
    {
        // a 64 KiB hole, then 64 KiB of data, 16 times: 32 extents
        Random random = new Random(3);
        for (int i = 0; i < 16; i++) {
            byte[] data = new byte[64 * KIB];
            random.nextBytes(data);
            device.write(OFFSET + 64 * KIB + i * 128L * KIB, data);
        }
        int length = 2 << 20;
        List<Chunk> chunks = readAndEncode(length, false);

        assertEquals(StructuredRead.MAX_CHUNKS, chunks.size());
        for (int k = 0; k < chunks.size() - 1; k++) {
            assertEquals(k % 2 == 0 ? REPLY_TYPE_OFFSET_HOLE : REPLY_TYPE_OFFSET_DATA, chunks.get(k).type, "chunk " + k);
            assertEquals(OFFSET + k * 64L * KIB, chunks.get(k).offset, "chunk " + k);
        }
        Chunk rest = chunks.get(chunks.size() - 1);
        assertEquals(REPLY_TYPE_OFFSET_DATA, rest.type, "the rest is data");
        assertEquals(OFFSET + 15 * 64L * KIB, rest.offset);
        assertEquals(length - 15 * 64 * KIB, rest.data.length);
        assertArrayEquals(device.read(OFFSET, length), assemble(chunks, length));
        assertDoneOnlyOnLast(chunks);
    }

    @Test
    void withoutExtentsOrWithDontFragmentAReadIsOneDataChunk()
            throws InterruptedException
    {
        device.write(OFFSET + 256 * KIB, new byte[] {1, 2, 3});
        int length = 512 * KIB;

        device.failWith(Errno.EIO);
        request.read.plan(OFFSET, length, device, false, known);
        assertEquals(length, request.read.span(), "extents failing: all data");
        device.failWith(0);

        List<Chunk> whole = readAndEncode(length, true);
        assertEquals(1, whole.size());
        assertEquals(REPLY_TYPE_OFFSET_DATA, whole.get(0).type);
        assertArrayEquals(device.read(OFFSET, length), whole.get(0).data);
    }

    @Test
    void aReadInsideAHoleIsOneHoleChunkAndNoPages()
    {
        request.reset(9, CMD_READ, 0, 4 << 20, 1 << 20);
        request.structured = true;
        request.read.plan(request.offset, request.length, device, true, known);
        assertEquals(0, request.read.span());

        List<Chunk> chunks = encode();
        assertEquals(1, chunks.size());
        assertEquals(REPLY_TYPE_OFFSET_HOLE, chunks.get(0).type);
        assertEquals(4 << 20, chunks.get(0).offset);
        assertEquals(1 << 20, chunks.get(0).holeLength);
        assertDoneOnlyOnLast(chunks);
    }

    @Test
    void readsInsideTheDataExtentLearntAskForNoMoreExtents()
    {
        // data from OFFSET to OFFSET + 8 MiB, a hole after it
        byte[] data = new byte[8 << 20];
        new Random(5).nextBytes(data);
        device.write(OFFSET, data);
        int length = 256 * KIB;
        for (int i = 0; i < 32; i++) {
            request.read.plan(OFFSET + (long) i * length, length, device, false, known);
            assertEquals(length, request.read.span(), "read " + i);
        }
        assertEquals(1, extentsQueries(), "a sequential copy of the data extent asks once: " + device.log());

        // past the data: asked again, and the hole is a hole
        request.read.plan(OFFSET + data.length + (1 << 20), length, device, false, known);
        assertEquals(0, request.read.span());
        assertEquals(2, extentsQueries());
        request.read.plan(OFFSET, length, device, false, known);
        assertEquals(2, extentsQueries(), "a hole is not learnt: the data extent is still known");

        known.forget();
        request.read.plan(OFFSET, length, device, false, known);
        assertEquals(3, extentsQueries(), "forgotten: asked again");
        assertEquals(length, request.read.span());
    }

    @Test
    void aHoleIsNeverRememberedSoDataWrittenIntoItIsRead()
            throws InterruptedException
    {
        int length = 512 * KIB;
        request.read.plan(OFFSET, length, device, false, known);
        assertEquals(0, request.read.span(), "all hole");

        byte[] data = new byte[length];
        new Random(7).nextBytes(data);
        device.write(OFFSET, data);
        List<Chunk> chunks = readAndEncode(length, false);
        assertEquals(1, chunks.size());
        assertEquals(REPLY_TYPE_OFFSET_DATA, chunks.get(0).type);
        assertArrayEquals(data, chunks.get(0).data);
    }

    private long extentsQueries()
    {
        return device.log().stream().filter(line -> line.startsWith("EXTENTS ")).count();
    }

    /** Plans a READ of {@code length} bytes at {@link #OFFSET}, reads its data chunks from the device and encodes the reply. */
    private List<Chunk> readAndEncode(int length, boolean dontFragment)
            throws InterruptedException
    {
        request.reset(7, CMD_READ, 0, OFFSET, length);
        request.structured = true;
        StructuredRead read = request.read;
        read.plan(request.offset, length, device, dontFragment, known);
        long span = read.span();
        request.ensurePages(PagePool.maxPages(span));
        request.nrPages = pagePool.allocate(span, request.pages);
        List<Integer> ended = new ArrayList<>();
        // the fake device completes each bio inside submit
        read.submit(request, device, (bio, error) -> {
            assertEquals(0, error);
            ended.add(read.ended(bio, error) ? 1 : 0);
        });
        assertEquals(1, ended.get(ended.size() - 1), "the last bio ended the read");
        assertEquals(1, ended.stream().mapToInt(Integer::intValue).sum(), "only the last bio ended the read");
        return encode();
    }

    private List<Chunk> encode()
    {
        Recorder out = new Recorder();
        request.read.encode(request, out);
        out.flush();
        ByteBuffer bytes = ByteBuffer.wrap(out.bytes.toByteArray());
        List<Chunk> chunks = new ArrayList<>();
        while (bytes.hasRemaining()) {
            assertEquals(STRUCTURED_REPLY_MAGIC, bytes.getInt());
            int flags = bytes.getShort();
            int type = bytes.getShort();
            assertEquals(request.cookie, bytes.getLong());
            int payload = bytes.getInt();
            long offset = bytes.getLong();
            if (type == REPLY_TYPE_OFFSET_HOLE) {
                chunks.add(new Chunk(flags, type, offset, bytes.getInt(), null));
            }
            else {
                byte[] data = new byte[payload - 8];
                bytes.get(data);
                chunks.add(new Chunk(flags, type, offset, 0, data));
            }
        }
        return chunks;
    }

    private static byte[] assemble(List<Chunk> chunks, int length)
    {
        byte[] out = new byte[length];
        for (Chunk chunk : chunks) {
            if (chunk.data != null) {
                System.arraycopy(chunk.data, 0, out, (int) (chunk.offset - OFFSET), chunk.data.length);
            }
        }
        return out;
    }

    private static void assertDoneOnlyOnLast(List<Chunk> chunks)
    {
        for (int k = 0; k < chunks.size(); k++) {
            assertEquals(k == chunks.size() - 1, (chunks.get(k).flags & REPLY_FLAG_DONE) != 0, "chunk " + k);
        }
    }

    private record Chunk(int flags, int type, long offset, int holeLength, byte[] data) {}

    /** Copies what is gathered at once, as a socket write would take it; checks that nothing gathered changes before a flush. */
    private static final class Recorder
            implements ReplyOutput
    {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        private final List<ByteBuffer> pending = new ArrayList<>();
        private final List<byte[]> copies = new ArrayList<>();

        @Override
        public void gather(ByteBuffer buffer)
        {
            byte[] copy = new byte[buffer.remaining()];
            buffer.duplicate().get(copy);
            pending.add(buffer);
            copies.add(copy);
        }

        @Override
        public void flush()
        {
            for (int i = 0; i < pending.size(); i++) {
                byte[] now = new byte[pending.get(i).remaining()];
                pending.get(i).duplicate().get(now);
                assertTrue(Arrays.equals(copies.get(i), now), "a gathered buffer changed before it was written");
                bytes.writeBytes(now);
            }
            pending.clear();
            copies.clear();
        }
    }
}
