package dev.jloop.iter;

import dev.jloop.api.IovIter;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.IovIter.Kind;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.lifecycle.AfterProperty;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every {@link IovIter} kind against a model: the segments laid end to end as one flat byte array,
 * a cursor into it and a count. Random segment layouts (empty segments included) and random
 * sequences of operations, with amounts drawn towards segment boundaries.
 */
class TestIovIterProperties
{
    private final PagePool pool = new PagePool(8 << 20);

    @AfterProperty
    void poolIsEmpty()
    {
        assertEquals(0, pool.usedBytes(), "pages leaked by the test");
    }

    @Provide
    Arbitrary<List<Integer>> layouts()
    {
        return Arbitraries.frequencyOf(
                        net.jqwik.api.Tuple.of(1, Arbitraries.just(0)),
                        net.jqwik.api.Tuple.of(3, Arbitraries.integers().between(1, 40)))
                .list().ofMaxSize(8);
    }

    @Property(tries = 400)
    void iovecMatchesModel(@ForAll("layouts") List<Integer> lengths, @ForAll long seed, @ForAll boolean truncated)
    {
        run(Fixture.heap(lengths, new Random(seed)), seed, truncated);
    }

    @Property(tries = 400)
    void kvecMatchesModel(@ForAll("layouts") List<Integer> lengths, @ForAll long seed, @ForAll boolean truncated)
    {
        run(Fixture.direct(lengths, new Random(seed)), seed, truncated);
    }

    @Property(tries = 150)
    void bvecMatchesModel(@ForAll @IntRange(min = 0, max = 40_000) int length, @ForAll long seed, @ForAll boolean truncated)
            throws InterruptedException
    {
        Page[] pages = new Page[PagePool.maxPages(length)];
        int n = pool.allocate(length, pages);
        try {
            run(Fixture.pages(pages, n, length, new Random(seed)), seed, truncated);
        }
        finally {
            pool.free(pages, n);
        }
    }

    private static void run(Fixture fixture, long seed, boolean truncated)
    {
        Random random = new Random(seed);
        for (Direction direction : Direction.values()) {
            Model model = new Model(fixture);
            IovIter iter = fixture.iter(direction);
            assertEquals(fixture.kind, iter.kind());
            assertEquals(direction, iter.direction());
            assertEquals(fixture.kind != Kind.IOVEC, iter.isDirect());
            if (truncated && model.count > 0) {
                long count = random.nextInt((int) model.count);
                iter.truncate(count);
                model.count = count;
            }
            model.check(iter);
            for (int step = 0; step < 60; step++) {
                model.step(iter, random);
                model.check(iter);
            }
        }
    }

    /** The memory under test, and where each segment lies in it. */
    private static final class Fixture
    {
        final Kind kind;
        final int[] starts;
        final int[] lengths;
        final long[] addresses;
        final ByteBuffer[] buffers;
        final Page[] pages;
        final int nrPages;
        final long iterCount;

        private Fixture(Kind kind, int[] lengths, long[] addresses, ByteBuffer[] buffers, Page[] pages, int nrPages, long iterCount)
        {
            this.kind = kind;
            this.lengths = lengths;
            this.addresses = addresses;
            this.buffers = buffers;
            this.pages = pages;
            this.nrPages = nrPages;
            this.iterCount = iterCount;
            this.starts = new int[lengths.length];
            for (int i = 1; i < lengths.length; i++) {
                starts[i] = starts[i - 1] + lengths[i - 1];
            }
        }

        /** Heap segments of one array, at odd offsets with gaps between them. */
        static Fixture heap(List<Integer> lengths, Random random)
        {
            byte[] array = new byte[lengths.stream().mapToInt(Integer::intValue).sum() + 3 * lengths.size() + 3];
            random.nextBytes(array);
            ByteBuffer[] buffers = new ByteBuffer[lengths.size()];
            int at = 1 + random.nextInt(3);
            for (int i = 0; i < buffers.length; i++) {
                buffers[i] = ByteBuffer.wrap(array, at, lengths.get(i));
                at += lengths.get(i) + random.nextInt(3);
            }
            return new Fixture(Kind.IOVEC, toArray(lengths), null, buffers, null, 0, -1);
        }

        /** Direct segments of one buffer, at positions (not slices) with odd addresses. */
        static Fixture direct(List<Integer> lengths, Random random)
        {
            ByteBuffer parent = ByteBuffer.allocateDirect(lengths.stream().mapToInt(Integer::intValue).sum() + 3 * lengths.size() + 3);
            long base = DirectMemory.address(parent);
            byte[] noise = new byte[parent.capacity()];
            random.nextBytes(noise);
            parent.put(0, noise);
            ByteBuffer[] buffers = new ByteBuffer[lengths.size()];
            long[] addresses = new long[lengths.size()];
            int at = 1 + random.nextInt(3);
            for (int i = 0; i < buffers.length; i++) {
                buffers[i] = parent.duplicate().position(at).limit(at + lengths.get(i));
                addresses[i] = base + at;
                at += lengths.get(i) + random.nextInt(3);
            }
            return new Fixture(Kind.KVEC, toArray(lengths), addresses, buffers, null, 0, -1);
        }

        static Fixture pages(Page[] pages, int n, long count, Random random)
        {
            int[] lengths = new int[n];
            long[] addresses = new long[n];
            ByteBuffer[] buffers = new ByteBuffer[n];
            for (int i = 0; i < n; i++) {
                lengths[i] = pages[i].size();
                addresses[i] = pages[i].address();
                buffers[i] = pages[i].buffer().duplicate().clear();
                byte[] noise = new byte[lengths[i]];
                random.nextBytes(noise);
                buffers[i].put(0, noise);
            }
            return new Fixture(Kind.BVEC, lengths, addresses, buffers, pages, n, count);
        }

        IovIter iter(Direction direction)
        {
            switch (kind) {
                case IOVEC:
                    return IovecIter.of(direction, dup(buffers));
                case KVEC:
                    return KvecIter.of(direction, dup(buffers));
                default:
                    return new BvecIter().reset(direction, pages, nrPages, iterCount);
            }
        }

        int total()
        {
            return Arrays.stream(lengths).sum();
        }

        /** The segments' current content, laid end to end. */
        byte[] content()
        {
            byte[] flat = new byte[total()];
            for (int i = 0; i < lengths.length; i++) {
                buffers[i].duplicate().get(flat, starts[i], lengths[i]);
            }
            return flat;
        }

        private static ByteBuffer[] dup(ByteBuffer[] buffers)
        {
            ByteBuffer[] copies = new ByteBuffer[buffers.length];
            for (int i = 0; i < buffers.length; i++) {
                copies[i] = buffers[i].duplicate();
            }
            return copies;
        }

        private static int[] toArray(List<Integer> lengths)
        {
            return lengths.stream().mapToInt(Integer::intValue).toArray();
        }
    }

    private static final class Model
    {
        final Fixture fixture;
        final byte[] memory;
        final int total;
        long pos;
        long count;

        Model(Fixture fixture)
        {
            this.fixture = fixture;
            this.memory = fixture.content();
            this.total = memory.length;
            this.count = fixture.iterCount < 0 ? total : fixture.iterCount;
        }

        void step(IovIter iter, Random random)
        {
            switch (random.nextInt(11)) {
                case 0: {
                    long n = amount(random, count);
                    iter.advance(n);
                    pos += n;
                    count -= n;
                    break;
                }
                case 1: {
                    long n = random.nextBoolean() ? amount(random, Math.min(pos, count + 1)) : random.nextInt((int) pos + 1);
                    n = Math.min(n, pos);
                    iter.revert(n);
                    pos -= n;
                    count += n;
                    break;
                }
                case 2: {
                    long n = amount(random, count + 2);
                    iter.truncate(n);
                    count = Math.min(count, n);
                    break;
                }
                case 3: {
                    long n = random.nextBoolean() ? total - pos : amount(random, total - pos);
                    iter.reexpand(n);
                    count = n;
                    break;
                }
                case 4:
                case 5: {
                    byte[] src = new byte[(int) amount(random, count + 3)];
                    random.nextBytes(src);
                    int n = (int) Math.min(src.length, count);
                    int copied;
                    if (random.nextBoolean()) {
                        ByteBuffer buffer = random.nextBoolean() ? ByteBuffer.wrap(src) : ByteBuffer.allocateDirect(src.length).put(src).flip();
                        copied = iter.copyToIter(buffer);
                        assertEquals(n, buffer.position(), "copyToIter advances the source");
                    }
                    else {
                        byte[] padded = new byte[src.length + 2];
                        System.arraycopy(src, 0, padded, 1, src.length);
                        copied = iter.copyToIter(padded, 1, src.length);
                    }
                    assertEquals(n, copied, "copyToIter");
                    System.arraycopy(src, 0, memory, (int) pos, n);
                    pos += n;
                    count -= n;
                    assertArrayEquals(memory, fixture.content(), "memory after copyToIter");
                    break;
                }
                case 6:
                case 7: {
                    int length = (int) amount(random, count + 3);
                    int n = (int) Math.min(length, count);
                    byte[] expected = Arrays.copyOfRange(memory, (int) pos, (int) pos + n);
                    byte[] actual = new byte[n];
                    int copied;
                    if (random.nextBoolean()) {
                        ByteBuffer buffer = random.nextBoolean() ? ByteBuffer.allocate(length) : ByteBuffer.allocateDirect(length);
                        copied = iter.copyFromIter(buffer);
                        assertEquals(n, buffer.position(), "copyFromIter advances the destination");
                        buffer.flip().get(actual);
                    }
                    else {
                        byte[] padded = new byte[length + 2];
                        copied = iter.copyFromIter(padded, 1, length);
                        System.arraycopy(padded, 1, actual, 0, n);
                        assertEquals(0, padded[0]);
                        assertEquals(0, padded[length + 1]);
                    }
                    assertEquals(n, copied, "copyFromIter");
                    assertArrayEquals(expected, actual, "copyFromIter at " + pos);
                    pos += n;
                    count -= n;
                    break;
                }
                case 8: {
                    long bytes = amount(random, count + 3);
                    int n = (int) Math.min(bytes, count);
                    assertEquals(n, iter.zero(bytes), "zero");
                    Arrays.fill(memory, (int) pos, (int) pos + n, (byte) 0);
                    pos += n;
                    count -= n;
                    assertArrayEquals(memory, fixture.content(), "memory after zero");
                    break;
                }
                case 9: {
                    assertThrows(IllegalArgumentException.class, () -> iter.advance(count + 1));
                    assertThrows(IllegalArgumentException.class, () -> iter.revert(pos + 1));
                    assertThrows(IllegalArgumentException.class, () -> iter.reexpand(total - pos + 1));
                    assertThrows(IllegalArgumentException.class, () -> iter.truncate(-1));
                    assertThrows(IllegalArgumentException.class, () -> iter.advance(-1));
                    break;
                }
                default: {
                    // Round trip: advance then revert returns to the same place.
                    long n = amount(random, count);
                    iter.advance(n);
                    iter.revert(n);
                    break;
                }
            }
        }

        /** An amount up to {@code limit}, often one that ends at, just before or just after a segment boundary. */
        long amount(Random random, long limit)
        {
            if (limit <= 0) {
                return 0;
            }
            long n;
            switch (random.nextInt(5)) {
                case 0:
                    n = limit;
                    break;
                case 1:
                    n = 0;
                    break;
                case 2: {
                    long boundary = nextBoundary();
                    n = boundary - pos + random.nextInt(3) - 1;
                    break;
                }
                default:
                    n = (long) (random.nextDouble() * (limit + 1));
            }
            return Math.max(0, Math.min(limit, n));
        }

        private long nextBoundary()
        {
            for (int i = 0; i < fixture.lengths.length; i++) {
                long end = fixture.starts[i] + fixture.lengths[i];
                if (end > pos) {
                    return end;
                }
            }
            return total;
        }

        void check(IovIter iter)
        {
            assertEquals(count, iter.count(), "count");
            List<long[]> expected = new ArrayList<>();
            long alignment = 0;
            for (int i = 0; i < fixture.lengths.length; i++) {
                long from = Math.max(pos, fixture.starts[i]);
                long to = Math.min(pos + count, fixture.starts[i] + fixture.lengths[i]);
                if (from < to) {
                    expected.add(new long[] {i, from, to});
                    if (fixture.addresses != null) {
                        alignment |= fixture.addresses[i] + (from - fixture.starts[i]);
                    }
                    alignment |= to - from;
                }
            }
            assertEquals(expected.size(), iter.nrSegs(), "nrSegs at " + pos + " with count " + count);
            assertEquals(alignment, iter.alignment(), "alignment");
            for (int k = 0; k < expected.size(); k++) {
                long[] seg = expected.get(k);
                int i = (int) seg[0];
                int length = (int) (seg[2] - seg[1]);
                assertEquals(length, iter.segmentLength(k), "segmentLength(" + k + ")");
                if (fixture.addresses != null) {
                    assertEquals(fixture.addresses[i] + (seg[1] - fixture.starts[i]), iter.segmentAddress(k), "segmentAddress(" + k + ")");
                }
                else {
                    int index = k;
                    assertThrows(UnsupportedOperationException.class, () -> iter.segmentAddress(index));
                }
                ByteBuffer buffer = iter.segmentBuffer(k);
                assertEquals(length, buffer.remaining(), "segmentBuffer(" + k + ").remaining()");
                assertEquals(fixture.kind != Kind.IOVEC, buffer.isDirect());
                byte[] actual = new byte[length];
                buffer.get(buffer.position(), actual);
                assertArrayEquals(Arrays.copyOfRange(memory, (int) seg[1], (int) seg[2]), actual, "segmentBuffer(" + k + ") content");
            }
            assertTrue(expected.size() > 0 || count == 0);
        }
    }
}
