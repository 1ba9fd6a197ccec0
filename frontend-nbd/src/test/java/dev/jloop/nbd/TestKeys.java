package dev.jloop.nbd;

import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.Base64;
import java.util.concurrent.TimeUnit;

/**
 * Self-signed certificates for tests, made with the JDK's own keytool (always there), and written
 * as the PEM files the server reads.
 */
public final class TestKeys
{
    private static final char[] PASSWORD = "changeit".toCharArray();

    public final Path certificate;
    public final Path pkcs8Key;
    public final X509Certificate x509;
    public final PrivateKey key;
    public final KeyStore keyStore;

    private TestKeys(Path certificate, Path pkcs8Key, X509Certificate x509, PrivateKey key, KeyStore keyStore)
    {
        this.certificate = certificate;
        this.pkcs8Key = pkcs8Key;
        this.x509 = x509;
        this.key = key;
        this.keyStore = keyStore;
    }

    /** The trust managers of a client that trusts this certificate alone. */
    public TrustManager[] trustManagers()
            throws GeneralSecurityException, IOException
    {
        KeyStore trusted = KeyStore.getInstance("PKCS12");
        trusted.load(null, null);
        trusted.setCertificateEntry("server", x509);
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(trusted);
        return trust.getTrustManagers();
    }

    /** A key pair ({@code RSA} or {@code EC}) and a self-signed certificate for {@code localhost} / 127.0.0.1. */
    public static TestKeys create(Path directory, String name, String algorithm)
            throws IOException, GeneralSecurityException, InterruptedException
    {
        Path store = directory.resolve(name + ".p12");
        Process keytool = new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
                "-genkeypair", "-alias", name, "-keyalg", algorithm, "-keysize", algorithm.equals("EC") ? "256" : "2048",
                "-dname", "CN=localhost", "-ext", "san=dns:localhost,ip:127.0.0.1", "-validity", "2",
                "-keystore", store.toString(), "-storetype", "PKCS12", "-storepass", new String(PASSWORD))
                .redirectErrorStream(true)
                .start();
        byte[] output;
        try (InputStream in = keytool.getInputStream()) {
            output = in.readAllBytes();
        }
        if (!keytool.waitFor(2, TimeUnit.MINUTES) || keytool.exitValue() != 0) {
            throw new IOException("keytool failed: " + new String(output, StandardCharsets.UTF_8));
        }
        KeyStore keyStore = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(store)) {
            keyStore.load(in, PASSWORD);
        }
        X509Certificate x509 = (X509Certificate) keyStore.getCertificate(name);
        PrivateKey key = (PrivateKey) keyStore.getKey(name, PASSWORD);
        Path certificate = directory.resolve(name + "-cert.pem");
        Files.writeString(certificate, pem("CERTIFICATE", x509.getEncoded()));
        Path pkcs8Key = directory.resolve(name + "-key.pem");
        Files.writeString(pkcs8Key, pem("PRIVATE KEY", key.getEncoded()));
        return new TestKeys(certificate, pkcs8Key, x509, key, keyStore);
    }

    public char[] password()
    {
        return PASSWORD.clone();
    }

    /**
     * The traditional form openssl and certtool also write: PKCS#1 for RSA, SEC1 for EC. It is the
     * OCTET STRING at the end of the PKCS#8 structure.
     */
    String traditionalPem()
    {
        byte[] pkcs8 = key.getEncoded();
        int position = 0;
        position = skipHeader(pkcs8, position); // SEQUENCE
        position = skipElement(pkcs8, position); // version
        position = skipElement(pkcs8, position); // algorithm
        int start = skipHeader(pkcs8, position); // OCTET STRING
        byte[] inner = Arrays.copyOfRange(pkcs8, start, start + length(pkcs8, position));
        return pem(key.getAlgorithm().equals("RSA") ? "RSA PRIVATE KEY" : "EC PRIVATE KEY", inner);
    }

    static String pem(String type, byte[] der)
    {
        return "-----BEGIN " + type + "-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
                + "\n-----END " + type + "-----\n";
    }

    private static int skipHeader(byte[] der, int position)
    {
        int first = der[position + 1] & 0xff;
        return position + 2 + (first >= 0x80 ? first & 0x7f : 0);
    }

    private static int skipElement(byte[] der, int position)
    {
        return skipHeader(der, position) + length(der, position);
    }

    private static int length(byte[] der, int position)
    {
        int first = der[position + 1] & 0xff;
        if (first < 0x80) {
            return first;
        }
        int length = 0;
        for (int i = 0; i < (first & 0x7f); i++) {
            length = (length << 8) | (der[position + 2 + i] & 0xff);
        }
        return length;
    }
}
