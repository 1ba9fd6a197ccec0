package dev.jloop.nbd.tls;

import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.pem.PemFiles;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * TLS as the server offers it: the mode, and the X.509 server credentials that NBD_OPT_STARTTLS
 * switches a connection to, on BoringSSL ({@link BoringSslEngines}) or the JDK's TLS
 * ({@link JdkTlsEngines}).
 *
 * <p>Only certificates: the PSK mode of nbdkit and qemu-nbd ({@code --tls-psk}) is not offered.
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

    /** Which implementation of TLS carries the records, as {@code --tls-engine} says. */
    public enum Engine
    {
        /** BoringSSL where its native library loads (Linux on x86-64 and ARM64), the JDK's TLS elsewhere. */
        AUTO,
        JDK,
        BORINGSSL
    }

    public static final NbdTls OFF = new NbdTls(Mode.OFF, null, false);

    private static final Logger log = LoggerFactory.getLogger(NbdTls.class);

    private final Mode mode;
    private final TlsEngines engines;
    private final boolean verifyPeer;

    private NbdTls(Mode mode, TlsEngines engines, boolean verifyPeer)
    {
        this.mode = requireNonNull(mode, "mode is null");
        this.engines = engines;
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
        List<X509Certificate> chain = read(settings.cert(), "tls-cert", PemFiles::certificates);
        if (chain.isEmpty()) {
            throw new IllegalArgumentException("no certificate in " + settings.cert());
        }
        PrivateKey key = read(settings.key(), "tls-key", PemFiles::privateKey);
        checkKeyMatches(key, chain.get(0).getPublicKey(), settings.cert(), settings.key());
        List<X509Certificate> authorities = null;
        if (settings.ca() != null) {
            authorities = read(settings.ca(), "tls-ca", PemFiles::certificates);
            if (authorities.isEmpty()) {
                throw new IllegalArgumentException("no certificate in " + settings.ca());
            }
        }
        TlsEngines engines = engines(settings.engine(), key, chain, authorities, settings.cert(), settings.key());
        return new NbdTls(settings.mode(), engines, settings.verifyPeer());
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
        if (engines == null) {
            throw new IllegalStateException("TLS is off");
        }
        return TlsNbdChannel.handshake(transport, engines);
    }

    /** The implementation serving TLS ({@code jdk} or {@code boringssl}); null when TLS is off. */
    public String engine()
    {
        return engines == null ? null : engines.name();
    }

    private static TlsEngines engines(Engine engine, PrivateKey key, List<X509Certificate> chain, List<X509Certificate> authorities,
            Path certFile, Path keyFile)
    {
        try {
            if (engine != Engine.JDK) {
                Throwable unavailable = BoringSslEngines.unavailabilityCause();
                if (unavailable == null) {
                    return BoringSslEngines.create(key, chain, authorities);
                }
                if (engine == Engine.BORINGSSL) {
                    throw new IllegalArgumentException("--tls-engine boringssl: BoringSSL's native library does not load here ("
                            + unavailable + "); --tls-engine jdk uses the JDK's TLS", unavailable);
                }
                log.info("TLS on the JDK's implementation: BoringSSL's native library does not load here ({})", unavailable.toString());
            }
            return JdkTlsEngines.create(key, chain, authorities);
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
