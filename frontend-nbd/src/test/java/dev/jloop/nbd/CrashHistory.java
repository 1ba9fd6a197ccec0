package dev.jloop.nbd;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One round of a crash-consistency workload as the NBD clients saw it, and the checker of what
 * their reads and the disk after a power cut may show. Every request is recorded on one logical
 * clock: when it was sent (ticked before its first byte goes out) and when its reply was received
 * (ticked after it was read), with the reply's error. "A before B" below always means A's reply was
 * received before B was sent, which is all a client can know.
 *
 * <p>Requests cover whole {@value #SECTOR}-byte sectors, and a WRITE fills each of its sectors with
 * a pattern naming the write and the sector ({@link #pattern}), so a sector read back says which
 * request left it there ({@link #decode}); zeros are zeros, and anything else (half of one write,
 * a sector moved) is garbage, never allowed after a cut: the disk keeps or loses a sector whole.
 *
 * <p>The rules, from the NBD protocol with multi-conn:
 * <ul>
 * <li><b>Durable:</b> a WRITE or WRITE_ZEROES answered successfully is durable when it had FUA, or
 *     when it was answered before a FLUSH was sent, on any connection, that was answered
 *     successfully.</li>
 * <li><b>After a cut</b> a sector may hold its content from the start of the round or that of any
 *     request sent that covers it (answered or not, failed or not: it may have reached the disk),
 *     unless that request (or the start of the round) came before a durable WRITE or WRITE_ZEROES
 *     of the sector: then the sector must hold that one or something sent since.</li>
 * <li><b>TRIM</b> is advisory: its sectors read zeros or what they could hold before, and it
 *     never replaces anything. (The spec lets a trimmed range read anything until it is written;
 *     this is stricter, and holds for jloop, which punches a hole or leaves the data.)</li>
 * <li><b>A READ</b> on connection K may return, per sector, the start content or that of a
 *     request sent before the READ's reply was received, unless it came before a WRITE or
 *     WRITE_ZEROES that K must see when the READ is sent: one answered on K before, or a FUA one
 *     answered before, or one followed by a FLUSH answered before (multi-conn: the effects of FLUSH
 *     and FUA are visible on every connection once their reply is sent). A READ racing a write
 *     may return bytes of several of those in one sector, as nothing orders the two (a buffered
 *     pread does not lock out a pwrite of the same page).</li>
 * <li>No request may fail before the cut.</li>
 * </ul>
 *
 * <p>Thread-safety: clients record from their own threads; checks run once the clients are done.
 */
final class CrashHistory
{
    static final int SECTOR = 512;
    /** The value of an all-zero sector. */
    static final long ZEROS = 0;
    /** The value of a sector holding bytes that no single request wrote there. */
    static final long GARBAGE = -1;
    private static final long NOT_ANSWERED = Long.MAX_VALUE;

    enum Kind
    {
        WRITE, WRITE_ZEROES, TRIM, FLUSH, READ,
    }

    /** One request as sent, and its reply once received. Written by its client thread only. */
    static final class Request
    {
        final Kind kind;
        /** Unique in the test: the cookie, and for a WRITE the value its sectors carry. */
        final long id;
        final int connection;
        final boolean fua;
        final int firstSector;
        final int sectors;
        long sent;
        long answered = NOT_ANSWERED;
        int error = -1;
        /** What a successful READ returned, per sector. */
        long[] read;
        /** The data of a successful READ in which a sector holds no single request's content. */
        byte[] data;
        /** When its effect is visible to every connection (FUA, or a later FLUSH answered); set by the checker. */
        long visibleEverywhere = NOT_ANSWERED;
        /** The first FLUSH answered successfully that was sent after it was answered; set by the checker. */
        Request flushedBy;

        Request(Kind kind, long id, int connection, boolean fua, int firstSector, int sectors)
        {
            this.kind = kind;
            this.id = id;
            this.connection = connection;
            this.fua = fua;
            this.firstSector = firstSector;
            this.sectors = sectors;
        }

        boolean ok()
        {
            return error == 0 && answered != NOT_ANSWERED;
        }

        long value()
        {
            return kind == Kind.WRITE ? id : ZEROS;
        }

        /** Whether it changes content the disk must keep in order (a TRIM may be ignored). */
        boolean replaces()
        {
            return kind == Kind.WRITE || kind == Kind.WRITE_ZEROES;
        }

        String durableBy()
        {
            return fua ? "FUA" : "FLUSH " + flushedBy;
        }

        @Override
        public String toString()
        {
            return "#" + id + " " + kind + (fua ? "+FUA" : "") + (kind == Kind.FLUSH ? "" : " sectors " + firstSector + "-" + (firstSector + sectors - 1))
                    + " on connection " + connection + ", sent at " + sent
                    + (answered == NOT_ANSWERED ? ", never answered" : ", answered at " + answered + (error == 0 ? "" : " with error " + error));
        }
    }

    /** What the checks found: violations, and how much the rules constrained. */
    static final class Findings
    {
        final List<String> violations = new ArrayList<>();
        /** Sectors checked after the cut. */
        long sectors;
        /** Of those, sectors where durability ruled out the content of a request sent. */
        long constrained;
        /** Of those, sectors where exactly one content was allowed. */
        long determined;
        /** Sectors of successful READs checked. */
        long readSectors;
    }

    private final AtomicLong clock = new AtomicLong();
    private final Collection<Request> requests = new ConcurrentLinkedQueue<>();
    private final long[] initial;

    /** {@code initial}: the value of every sector when the round starts. */
    CrashHistory(long[] initial)
    {
        this.initial = initial.clone();
    }

    long tick()
    {
        return clock.incrementAndGet();
    }

    /** Records the request as sent now; call just before its first byte goes out. */
    void sent(Request request)
    {
        request.sent = tick();
        requests.add(request);
    }

    /** Records the reply, just received. */
    void answered(Request request, int error)
    {
        request.answered = tick();
        request.error = error;
    }

    /**
     * Checks the READs answered during the round, the errors, and {@code found}, the value of every
     * sector read back after the cut at {@code cutAt}.
     */
    Findings check(long cutAt, long[] found)
    {
        Findings findings = new Findings();
        List<Request> flushes = new ArrayList<>();
        long lastFlushSent = Long.MIN_VALUE;
        for (Request request : requests) {
            if (request.kind == Kind.FLUSH && request.ok()) {
                flushes.add(request);
                lastFlushSent = Math.max(lastFlushSent, request.sent);
            }
            if (request.error != 0 && request.answered < cutAt) {
                findings.violations.add("failed before the power cut at " + cutAt + ": " + request);
            }
        }
        List<List<Request>> bySector = new ArrayList<>(Collections.nCopies(initial.length, List.of()));
        for (Request request : requests) {
            if (request.kind == Kind.FLUSH || request.kind == Kind.READ) {
                continue;
            }
            request.visibleEverywhere = request.fua && request.ok() ? request.answered : NOT_ANSWERED;
            for (Request flush : flushes) {
                if (request.ok() && request.answered < flush.sent) {
                    request.visibleEverywhere = Math.min(request.visibleEverywhere, flush.answered);
                    if (request.flushedBy == null || flush.sent < request.flushedBy.sent) {
                        request.flushedBy = flush;
                    }
                }
            }
            for (int i = 0; i < request.sectors; i++) {
                int sector = request.firstSector + i;
                if (bySector.get(sector).isEmpty()) {
                    bySector.set(sector, new ArrayList<>());
                }
                bySector.get(sector).add(request);
            }
        }
        for (Request read : requests) {
            if (read.kind == Kind.READ && read.ok()) {
                for (int i = 0; i < read.sectors; i++) {
                    checkRead(read, read.firstSector + i, read.read[i], bySector.get(read.firstSector + i), findings);
                }
            }
        }
        for (int sector = 0; sector < initial.length; sector++) {
            checkAfterCut(sector, found[sector], bySector.get(sector), lastFlushSent, findings);
        }
        return findings;
    }

    private void checkRead(Request read, int sector, long value, List<Request> history, Findings findings)
    {
        findings.readSectors++;
        // Seen by the read's connection when it was sent: a WRITE or WRITE_ZEROES answered before, on it or made visible to all.
        List<Request> seen = new ArrayList<>();
        for (Request request : history) {
            if (request.replaces() && request.ok() && request.answered < read.sent
                    && (request.connection == read.connection || request.visibleEverywhere < read.sent)) {
                seen.add(request);
            }
        }
        Set<Long> allowed = new HashSet<>();
        if (seen.isEmpty()) {
            allowed.add(initial[sector]);
        }
        for (Request request : history) {
            if (request.sent < read.answered && !replacedBy(request, seen)) {
                allowed.add(request.value());
            }
        }
        if (allowed.contains(value) || (value == GARBAGE && mixOf(allowed, read.data, (sector - read.firstSector) * SECTOR, sector))) {
            return;
        }
        findings.violations.add(read + " returned " + describe(value) + " for sector " + sector
                + ", which that connection may not see then" + history(sector, history));
    }

    /**
     * Whether every byte of the sector at {@code data[offset...]} is the byte of one of the allowed
     * values: a read that races a write may see part of each, as nothing orders them.
     */
    private static boolean mixOf(Set<Long> allowed, byte[] data, int offset, int sector)
    {
        List<byte[]> contents = new ArrayList<>();
        for (long value : allowed) {
            contents.add(value == ZEROS ? new byte[SECTOR] : pattern(value, sector, 1));
        }
        for (int i = 0; i < SECTOR; i++) {
            boolean found = false;
            for (byte[] content : contents) {
                found |= content[i] == data[offset + i];
            }
            if (!found) {
                return false;
            }
        }
        return true;
    }

    private void checkAfterCut(int sector, long value, List<Request> history, long lastFlushSent, Findings findings)
    {
        findings.sectors++;
        List<Request> durable = new ArrayList<>();
        for (Request request : history) {
            if (request.replaces() && request.ok() && (request.fua || request.answered < lastFlushSent)) {
                durable.add(request);
            }
        }
        Set<Long> allowed = new HashSet<>();
        Set<Long> candidates = new HashSet<>();
        candidates.add(initial[sector]);
        if (durable.isEmpty()) {
            allowed.add(initial[sector]);
        }
        for (Request request : history) {
            candidates.add(request.value());
            if (!replacedBy(request, durable)) {
                allowed.add(request.value());
            }
        }
        if (!allowed.containsAll(candidates)) {
            findings.constrained++;
        }
        if (allowed.size() == 1) {
            findings.determined++;
        }
        if (!allowed.contains(value)) {
            StringBuilder text = new StringBuilder("after the power cut sector ").append(sector).append(" holds ").append(describe(value));
            boolean written = false;
            if (value == initial[sector]) {
                written = true;
                text.append("; the start content was replaced by durable ").append(replacement(Long.MIN_VALUE, durable));
            }
            for (Request request : history) {
                if (request.value() == value) {
                    written = true;
                    text.append("; that of #").append(request.id).append(" was replaced by durable ").append(replacement(request.answered, durable));
                }
            }
            if (!written) {
                text.append(", which no request sent there wrote");
            }
            findings.violations.add(text.append(history(sector, history)).toString());
        }
    }

    /** The first of {@code durable} sent after {@code answered}, and why it is durable. */
    private static String replacement(long answered, List<Request> durable)
    {
        for (Request request : durable) {
            if (answered < request.sent) {
                return request + " (durable by " + request.durableBy() + ")";
            }
        }
        throw new IllegalStateException("not replaced");
    }

    /** Whether one of {@code later} was sent after {@code request} was answered: it replaced the request's content in order. */
    private static boolean replacedBy(Request request, List<Request> later)
    {
        for (Request replacement : later) {
            if (request.answered < replacement.sent) {
                return true;
            }
        }
        return false;
    }

    private String describe(long value)
    {
        if (value == GARBAGE) {
            return "bytes no single request wrote there";
        }
        if (value == ZEROS) {
            return "zeros";
        }
        return "the data of #" + value;
    }

    private String history(int sector, List<Request> history)
    {
        StringBuilder text = new StringBuilder("\n    sector ").append(sector).append(" held ").append(describe(initial[sector])).append(" at the start");
        for (Request request : history) {
            text.append("\n    ").append(request);
        }
        return text.toString();
    }

    /** The data of a WRITE with id {@code id} of {@code sectors} sectors from {@code firstSector}. */
    static byte[] pattern(long id, int firstSector, int sectors)
    {
        byte[] data = new byte[sectors * SECTOR];
        for (int i = 0; i < sectors; i++) {
            fill(data, i * SECTOR, id, firstSector + i);
        }
        return data;
    }

    /** The value of the sector at {@code data[offset, offset + SECTOR)}: {@link #ZEROS}, a write's id, or {@link #GARBAGE}. */
    static long decode(byte[] data, int offset, int sector)
    {
        boolean zeros = true;
        for (int i = offset; i < offset + SECTOR && zeros; i++) {
            zeros = data[i] == 0;
        }
        if (zeros) {
            return ZEROS;
        }
        long id = ByteBuffer.wrap(data, offset, SECTOR).getLong();
        if (id <= 0) {
            return GARBAGE;
        }
        byte[] expected = new byte[SECTOR];
        fill(expected, 0, id, sector);
        return Arrays.equals(data, offset, offset + SECTOR, expected, 0, SECTOR) ? id : GARBAGE;
    }

    private static void fill(byte[] data, int offset, long id, int sector)
    {
        ByteBuffer buffer = ByteBuffer.wrap(data, offset, SECTOR);
        buffer.putLong(id).putLong(sector);
        // xorshift64 from the write and the sector: every sector of every write differs throughout
        long x = (id * 0x9E3779B97F4A7C15L) ^ ((long) sector << 32) ^ 0x5DEECE66DL;
        while (buffer.hasRemaining()) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            buffer.putLong(x);
        }
    }
}
