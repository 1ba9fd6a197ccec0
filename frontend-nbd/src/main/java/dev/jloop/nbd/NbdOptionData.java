package dev.jloop.nbd;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The data of the handshake options that carry more than a name, parsed and checked: lengths that
 * point past the data, announced counts that are not there, and names or queries that are not
 * UTF-8 are {@link InvalidOptionException}s, which the handshake answers with NBD_REP_ERR_INVALID
 * before it goes on. Only the format is checked here; what the request means is the handshake's.
 */
final class NbdOptionData
{
    private NbdOptionData() {}

    /** NBD_OPT_INFO or NBD_OPT_GO: the export and the information types asked for. */
    record InfoRequest(String name, int[] types) {}

    /** NBD_OPT_LIST_META_CONTEXT or NBD_OPT_SET_META_CONTEXT: the export and the context queries. */
    record MetaContextRequest(String name, List<String> queries) {}

    /** Option data that does not follow the option's format; the message says how. */
    static final class InvalidOptionException
            extends Exception
    {
        InvalidOptionException(String message)
        {
            super(message);
        }
    }

    /** u32 name length, name, u16 number of information requests, u16 each. */
    static InfoRequest infoRequest(ByteBuffer data)
            throws InvalidOptionException
    {
        ByteBuffer nameBytes = nameBytes(data, 2);
        int count = Short.toUnsignedInt(data.getShort());
        if (data.remaining() != 2 * count) {
            throw new InvalidOptionException("number of information requests does not match the option length");
        }
        String name = decode(nameBytes, "export name is not UTF-8");
        int[] types = new int[count];
        for (int i = 0; i < count; i++) {
            types[i] = Short.toUnsignedInt(data.getShort());
        }
        return new InfoRequest(name, types);
    }

    /** u32 export name length, name, u32 number of queries, then each query as u32 length and string. */
    static MetaContextRequest metaContextRequest(ByteBuffer data)
            throws InvalidOptionException
    {
        ByteBuffer nameBytes = nameBytes(data, 4);
        long count = Integer.toUnsignedLong(data.getInt());
        List<String> queries = new ArrayList<>();
        for (long i = 0; i < count; i++) {
            if (data.remaining() < 4) {
                throw new InvalidOptionException("fewer queries than announced");
            }
            long queryLength = Integer.toUnsignedLong(data.getInt());
            if (queryLength > data.remaining()) {
                throw new InvalidOptionException("query length past the option data");
            }
            ByteBuffer queryBytes = data.slice(data.position(), (int) queryLength);
            data.position(data.position() + (int) queryLength);
            queries.add(decode(queryBytes, "query is not UTF-8"));
        }
        if (data.hasRemaining()) {
            throw new InvalidOptionException("option data after the last query");
        }
        return new MetaContextRequest(decode(nameBytes, "export name is not UTF-8"), queries);
    }

    /** The name of NBD_OPT_EXPORT_NAME, which is all its data. */
    static String exportName(ByteBuffer data)
            throws InvalidOptionException
    {
        return decode(data, "export name is not UTF-8");
    }

    /** The u32 length and bytes of an export name, followed by at least {@code after} more bytes of data. */
    private static ByteBuffer nameBytes(ByteBuffer data, int after)
            throws InvalidOptionException
    {
        if (data.remaining() < 4 + after) {
            throw new InvalidOptionException("option data too short");
        }
        long nameLength = Integer.toUnsignedLong(data.getInt());
        if (nameLength > data.remaining() - after) {
            throw new InvalidOptionException("export name length past the option data");
        }
        ByteBuffer nameBytes = data.slice(data.position(), (int) nameLength);
        data.position(data.position() + (int) nameLength);
        return nameBytes;
    }

    private static String decode(ByteBuffer bytes, String message)
            throws InvalidOptionException
    {
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(bytes);
            return chars.toString();
        }
        catch (CharacterCodingException e) {
            throw new InvalidOptionException(message);
        }
    }
}
