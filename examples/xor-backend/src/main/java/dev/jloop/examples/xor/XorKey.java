package dev.jloop.examples.xor;

import java.util.HexFormat;

import static java.util.Objects.requireNonNull;

/**
 * The key of the {@code xor} backend: one or more bytes, repeated over the file from offset 0, so
 * that the byte at offset {@code p} is stored as {@code data ^ key[p % key.length]}. XOR is its own
 * inverse: the same call encodes a write and decodes a read.
 */
final class XorKey
{
    private final byte[] key;

    private XorKey(byte[] key)
    {
        this.key = key;
    }

    /**
     * A key written in hex, with or without {@code 0x}: {@code 0x5a}, {@code 5a17c3}.
     *
     * @throws IllegalArgumentException saying what is wrong, with an example
     */
    static XorKey parse(String text)
    {
        requireNonNull(text, "text is null");
        String hex = text.strip();
        if (hex.startsWith("0x") || hex.startsWith("0X")) {
            hex = hex.substring(2);
        }
        if (hex.isEmpty() || hex.length() % 2 != 0) {
            throw new IllegalArgumentException("--xor-key takes whole bytes in hex, such as 0x5a or 0x5a17c3, not '" + text + "'");
        }
        try {
            return new XorKey(HexFormat.of().parseHex(hex));
        }
        catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--xor-key takes whole bytes in hex, such as 0x5a or 0x5a17c3, not '" + text + "'", e);
        }
    }

    /** XORs {@code bytes[offset, offset + length)}, which are the file's bytes from {@code position} on. */
    void apply(byte[] bytes, int offset, int length, long position)
    {
        int k = (int) (position % key.length);
        for (int i = offset; i < offset + length; i++) {
            bytes[i] ^= key[k];
            k = k + 1 == key.length ? 0 : k + 1;
        }
    }

    @Override
    public String toString()
    {
        return "0x" + HexFormat.of().formatHex(key);
    }
}
