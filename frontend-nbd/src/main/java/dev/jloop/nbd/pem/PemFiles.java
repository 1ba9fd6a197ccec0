package dev.jloop.nbd.pem;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Certificates and private keys in PEM, as openssl and GnuTLS's certtool write them. Keys may be
 * PKCS#8 ({@code PRIVATE KEY}: RSA, EC, Ed25519, Ed448), PKCS#1 ({@code RSA PRIVATE KEY}) or SEC1
 * ({@code EC PRIVATE KEY}); the last two are rewrapped as PKCS#8, the only form JSSE reads.
 * Encrypted keys are refused: the server has no one to ask for a passphrase.
 *
 * <p>Nothing here is NBD's: it depends on the JDK alone, so that any other TLS endpoint of jloop
 * can read the same files the same way.
 */
public final class PemFiles
{
    private static final Pattern BLOCK = Pattern.compile(
            "-----BEGIN ([A-Z0-9 ]+)-----\\R((?:[^-].*\\R)*?)-----END \\1-----");
    // 1.2.840.113549.1.1.1 rsaEncryption, and its NULL parameters
    private static final byte[] RSA_ALGORITHM = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
    // 1.2.840.10045.2.1 id-ecPublicKey
    private static final byte[] EC_PUBLIC_KEY = {0x06, 0x07, 0x2a, (byte) 0x86, 0x48, (byte) 0xce, 0x3d, 0x02, 0x01};
    private static final byte[] VERSION_0 = {0x02, 0x01, 0x00};

    private PemFiles() {}

    /** Every certificate in the file, in order (server certificate first, then its chain). */
    public static List<X509Certificate> certificates(byte[] pem)
            throws GeneralSecurityException
    {
        List<X509Certificate> certificates = new ArrayList<>();
        CertificateFactory factory = CertificateFactory.getInstance("X.509");
        for (Block block : blocks(pem)) {
            if (block.type().equals("CERTIFICATE") || block.type().equals("X509 CERTIFICATE") || block.type().equals("TRUSTED CERTIFICATE")) {
                certificates.add((X509Certificate) factory.generateCertificate(new ByteArrayInputStream(block.der())));
            }
        }
        return certificates;
    }

    /** The one private key in the file. */
    public static PrivateKey privateKey(byte[] pem)
            throws IOException, GeneralSecurityException
    {
        for (Block block : blocks(pem)) {
            switch (block.type()) {
                case "PRIVATE KEY":
                    return pkcs8(block.der());
                case "RSA PRIVATE KEY":
                    block.refuseEncrypted();
                    return pkcs8(sequence(VERSION_0, RSA_ALGORITHM, tlv(0x04, block.der())));
                case "EC PRIVATE KEY":
                    block.refuseEncrypted();
                    return pkcs8(sequence(VERSION_0, sequence(EC_PUBLIC_KEY, sec1Curve(block.der())), tlv(0x04, block.der())));
                case "ENCRYPTED PRIVATE KEY":
                    throw new IOException("the private key is encrypted; store it decrypted (openssl pkey -in KEY -out PLAIN) and protect the file instead");
                default:
                    // EC PARAMETERS (openssl ecparam -genkey), certificates: not the key
                    break;
            }
        }
        throw new IOException("no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in the file");
    }

    private static PrivateKey pkcs8(byte[] der)
            throws GeneralSecurityException
    {
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
        GeneralSecurityException failure = null;
        for (String algorithm : List.of("RSA", "EC", "Ed25519", "Ed448", "RSASSA-PSS")) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(spec);
            }
            catch (GeneralSecurityException e) {
                failure = failure == null ? e : failure;
            }
        }
        throw new GeneralSecurityException("unsupported private key type (RSA, EC, Ed25519 and Ed448 work)", failure);
    }

    /**
     * The named curve of a SEC1 key (RFC 5915): SEQUENCE { version, OCTET STRING key,
     * [0] parameters, [1] public key }. openssl and certtool always write the parameters.
     */
    private static byte[] sec1Curve(byte[] der)
            throws IOException
    {
        Der key = new Der(der);
        Der fields = key.enter(0x30);
        fields.skip(0x02);
        fields.skip(0x04);
        if (fields.atEnd() || fields.peekTag() != 0xa0) {
            throw new IOException("EC private key without its curve; write it with openssl ec -param_out or as PKCS#8");
        }
        Der parameters = fields.enter(0xa0);
        return parameters.element(0x06);
    }

    private record Block(String type, String headers, byte[] der)
    {
        void refuseEncrypted()
                throws IOException
        {
            if (headers.contains("ENCRYPTED")) {
                throw new IOException("the private key is encrypted; store it decrypted (openssl pkey -in KEY -out PLAIN) and protect the file instead");
            }
        }
    }

    private static List<Block> blocks(byte[] pem)
            throws GeneralSecurityException
    {
        String text = new String(pem, StandardCharsets.US_ASCII).replace("\r\n", "\n");
        List<Block> blocks = new ArrayList<>();
        Matcher matcher = BLOCK.matcher(text);
        while (matcher.find()) {
            StringBuilder headers = new StringBuilder();
            StringBuilder base64 = new StringBuilder();
            for (String line : matcher.group(2).split("\n")) {
                if (line.contains(":")) {
                    headers.append(line).append('\n');
                }
                else {
                    base64.append(line.trim());
                }
            }
            try {
                blocks.add(new Block(matcher.group(1), headers.toString(), Base64.getDecoder().decode(base64.toString())));
            }
            catch (IllegalArgumentException e) {
                throw new GeneralSecurityException("bad base64 in PEM block " + matcher.group(1));
            }
        }
        if (blocks.isEmpty()) {
            throw new GeneralSecurityException("not a PEM file (no -----BEGIN ...----- block)");
        }
        return blocks;
    }

    private static byte[] sequence(byte[]... parts)
    {
        ByteArrayOutputStream content = new ByteArrayOutputStream();
        for (byte[] part : parts) {
            content.writeBytes(part);
        }
        return tlv(0x30, content.toByteArray());
    }

    private static byte[] tlv(int tag, byte[] value)
    {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        int length = value.length;
        if (length < 0x80) {
            out.write(length);
        }
        else {
            int bytes = (Integer.SIZE - Integer.numberOfLeadingZeros(length) + 7) / 8;
            out.write(0x80 | bytes);
            for (int i = bytes - 1; i >= 0; i--) {
                out.write(length >>> (8 * i));
            }
        }
        out.writeBytes(value);
        return out.toByteArray();
    }

    /** Just enough of a DER reader to walk a SEC1 key. */
    private static final class Der
    {
        private final byte[] bytes;
        private int position;
        private final int end;

        Der(byte[] bytes)
        {
            this(bytes, 0, bytes.length);
        }

        private Der(byte[] bytes, int position, int end)
        {
            this.bytes = bytes;
            this.position = position;
            this.end = end;
        }

        boolean atEnd()
        {
            return position >= end;
        }

        int peekTag()
        {
            return bytes[position] & 0xff;
        }

        /** The contents of the next element, which must have {@code tag}. */
        Der enter(int tag)
                throws IOException
        {
            int length = header(tag);
            Der inner = new Der(bytes, position, position + length);
            position += length;
            return inner;
        }

        void skip(int tag)
                throws IOException
        {
            int length = header(tag);
            position += length;
        }

        /** The whole next element, tag and length included. */
        byte[] element(int tag)
                throws IOException
        {
            int start = position;
            int length = header(tag);
            position += length;
            byte[] element = new byte[position - start];
            System.arraycopy(bytes, start, element, 0, element.length);
            return element;
        }

        private int header(int tag)
                throws IOException
        {
            if (position + 2 > end || (bytes[position] & 0xff) != tag) {
                throw new IOException("malformed EC private key");
            }
            position++;
            int length = bytes[position++] & 0xff;
            if (length >= 0x80) {
                int count = length & 0x7f;
                if (count > 3 || position + count > end) {
                    throw new IOException("malformed EC private key");
                }
                length = 0;
                for (int i = 0; i < count; i++) {
                    length = (length << 8) | (bytes[position++] & 0xff);
                }
            }
            if (position + length > end) {
                throw new IOException("malformed EC private key");
            }
            return length;
        }
    }
}
