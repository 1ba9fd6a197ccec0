package dev.jloop.nbd.tls;

import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.pem.PemFiles;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * TLS as the server offers it: the mode, and the X.509 server credentials (JSSE) that NBD_OPT_STARTTLS
 * switches a connection to.
 *
 * <p>Only certificates: JSSE implements no TLS-PSK cipher suites (RFC 4279) and no external PSKs
 * for TLS 1.3, so the PSK mode of nbdkit and qemu-nbd ({@code --tls-psk}) is not offered.
 */
public final class NbdTls
{
    /** What the server does about TLS, as nbdkit's {@code --tls=off|on|require}. */
    public enum Mode
    {
        /** NBD_OPT_STARTTLS is refused as unsupported. */
        OFF,
        /** Clients may start TLS, or go on in clear text. */
        ON,
        /** Every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD until TLS is up. */
        REQUIRE
    }

    public static final NbdTls OFF = new NbdTls(Mode.OFF, null, false);

    private final Mode mode;
    private final SSLContext context;
    private final boolean verifyPeer;

    private NbdTls(Mode mode, SSLContext context, boolean verifyPeer)
    {
        this.mode = requireNonNull(mode, "mode is null");
        this.context = context;
        this.verifyPeer = verifyPeer;
    }

    /**
     * Reads the credentials {@code settings} name and makes the server's TLS context; a file that cannot
     * be read, or a key that does not belong to the certificate, is an {@link IllegalArgumentException}.
     */
    public static NbdTls load(TlsSettings settings)
    {
        if (settings.mode() == Mode.OFF) {
            return OFF;
        }
        return new NbdTls(settings.mode(), sslContext(settings.cert(), settings.key(), settings.ca()), settings.verifyPeer());
    }

    public Mode mode()
    {
        return mode;
    }

    public boolean verifyPeer()
    {
        return verifyPeer;
    }

    /**
     * Runs the server side of a TLS handshake over {@code transport} (blocking) and returns the
     * encrypted channel; the transport is then only used through it.
     */
    public NbdChannel startTls(NbdChannel transport)
            throws IOException
    {
        if (context == null) {
            throw new IllegalStateException("TLS is off");
        }
        SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        engine.setNeedClientAuth(verifyPeer);
        return TlsNbdChannel.handshake(transport, engine);
    }

    private static SSLContext sslContext(Path certFile, Path keyFile, Path caFile)
    {
        List<X509Certificate> chain = read(certFile, "tls-cert", PemFiles::certificates);
        if (chain.isEmpty()) {
            throw new IllegalArgumentException("no certificate in " + certFile);
        }
        PrivateKey key = read(keyFile, "tls-key", PemFiles::privateKey);
        checkKeyMatches(key, chain.get(0).getPublicKey(), certFile, keyFile);
        try {
            char[] password = new char[0];
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            keys.setKeyEntry("server", key, password, chain.toArray(new Certificate[0]));
            KeyManagerFactory keyManagers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keyManagers.init(keys, password);

            TrustManager[] trustManagers = null;
            if (caFile != null) {
                List<X509Certificate> authorities = read(caFile, "tls-ca", PemFiles::certificates);
                if (authorities.isEmpty()) {
                    throw new IllegalArgumentException("no certificate in " + caFile);
                }
                KeyStore trusted = KeyStore.getInstance("PKCS12");
                trusted.load(null, null);
                for (int i = 0; i < authorities.size(); i++) {
                    trusted.setCertificateEntry("ca-" + i, authorities.get(i));
                }
                TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                factory.init(trusted);
                trustManagers = factory.getTrustManagers();
            }
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(keyManagers.getKeyManagers(), trustManagers, null);
            return context;
        }
        catch (GeneralSecurityException | IOException e) {
            throw new IllegalArgumentException("cannot set up TLS with " + certFile + " and " + keyFile + ": " + e.getMessage(), e);
        }
    }

    /** A key that does not belong to the certificate would only show as failing handshakes: say so at start. */
    private static void checkKeyMatches(PrivateKey key, PublicKey certificateKey, Path certFile, Path keyFile)
    {
        String algorithm;
        switch (key.getAlgorithm()) {
            case "RSA":
                algorithm = "SHA256withRSA";
                break;
            case "EC":
                algorithm = "SHA256withECDSA";
                break;
            default:
                // Ed25519, Ed448 and others sign under their own name
                algorithm = key.getAlgorithm();
                break;
        }
        try {
            byte[] probe = "jloop key check".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            Signature signer = Signature.getInstance(algorithm);
            signer.initSign(key);
            signer.update(probe);
            byte[] signature = signer.sign();
            Signature verifier = Signature.getInstance(algorithm);
            verifier.initVerify(certificateKey);
            verifier.update(probe);
            if (verifier.verify(signature)) {
                return;
            }
        }
        catch (GeneralSecurityException e) {
            // a key of another type than the certificate's: not a match
        }
        throw new IllegalArgumentException("the private key in " + keyFile + " does not belong to the certificate in " + certFile);
    }

    private interface PemReader<T>
    {
        T read(byte[] pem)
                throws IOException, GeneralSecurityException;
    }

    private static <T> T read(Path file, String option, PemReader<T> reader)
    {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        }
        catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + option + " " + file + ": " + e, e);
        }
        try {
            return reader.read(bytes);
        }
        catch (IOException | GeneralSecurityException e) {
            throw new IllegalArgumentException("cannot read " + option + " " + file + ": " + e.getMessage(), e);
        }
    }
}
