package dev.jloop.nbd.tls;

import dev.jloop.nbd.channel.NbdChannel;
import dev.jloop.nbd.pem.PemFiles;
import com.sun.management.HotSpotDiagnosticMXBean;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * TLS as the server offers it: the mode, and the X.509 server credentials (JSSE) that NBD_OPT_STARTTLS
 * switches a connection to.
 *
 * <p>Only certificates: JSSE implements no TLS-PSK cipher suites (RFC 4279) and no external PSKs
 * for TLS 1.3, so the PSK mode of nbdkit and qemu-nbd ({@code --tls-psk}) is not offered.
 *
 * <p>The server, not the client, picks the cipher suite, from the JDK's enabled ones in an order
 * made for bulk data ({@link #preferredOrder}): AES-128-GCM first where the JVM runs AES on the
 * processor's AES instructions, ChaCha20-Poly1305 first where it cannot. GnuTLS clients (nbdcopy,
 * qemu) list AES-256-GCM first, which costs a tenth more per byte; ChaCha20 has no intrinsic before
 * JDK 20 and runs at less than a tenth of AES-GCM's speed there.
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
    private final String[] cipherSuites;

    private NbdTls(Mode mode, SSLContext context, boolean verifyPeer)
    {
        this.mode = requireNonNull(mode, "mode is null");
        this.context = context;
        this.verifyPeer = verifyPeer;
        this.cipherSuites = context == null ? null : preferredOrder(context.getDefaultSSLParameters().getCipherSuites(), aesIntrinsics());
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
        NbdTls tls = new NbdTls(settings.mode(), sslContext(chain, settings.cert(), settings.key(), settings.ca()), settings.verifyPeer());
        TlsWarmUp.startOnce(tls.context, tls.cipherSuites, chain.get(0));
        return tls;
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
        SSLParameters parameters = engine.getSSLParameters();
        parameters.setCipherSuites(cipherSuites);
        parameters.setUseCipherSuitesOrder(true);
        parameters.setNeedClientAuth(verifyPeer);
        engine.setSSLParameters(parameters);
        return TlsNbdChannel.handshake(transport, engine);
    }

    /**
     * The suites in the order the server prefers them: within each key exchange (the suites of TLS
     * 1.3 are one group), the fastest bulk cipher for this processor first; the groups and the
     * other suites keep the JDK's order, so forward secrecy still comes first.
     */
    static String[] preferredOrder(String[] suites, boolean aesIntrinsics)
    {
        Map<String, Integer> groups = new HashMap<>();
        for (String suite : suites) {
            groups.putIfAbsent(keyExchange(suite), groups.size());
        }
        List<String> ordered = new ArrayList<>(Arrays.asList(suites));
        ordered.sort(Comparator.<String>comparingInt(suite -> groups.get(keyExchange(suite)))
                .thenComparingInt(suite -> cipherRank(suite, aesIntrinsics)));
        return ordered.toArray(new String[0]);
    }

    private static String keyExchange(String suite)
    {
        int with = suite.indexOf("_WITH_");
        return with < 0 ? "TLS13" : suite.substring(0, with);
    }

    private static int cipherRank(String suite, boolean aesIntrinsics)
    {
        if (suite.contains("_AES_128_GCM_")) {
            return aesIntrinsics ? 0 : 1;
        }
        if (suite.contains("_AES_256_GCM_")) {
            return aesIntrinsics ? 1 : 2;
        }
        if (suite.contains("_CHACHA20_POLY1305_")) {
            return aesIntrinsics ? 2 : 0;
        }
        return 3;
    }

    /** Whether HotSpot runs AES on the processor's instructions (AES-NI, ARMv8 AES: {@code -XX:+UseAES}, on by default where they exist); assumed so where it cannot say. */
    private static boolean aesIntrinsics()
    {
        try {
            HotSpotDiagnosticMXBean hotSpot = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
            return hotSpot == null || Boolean.parseBoolean(hotSpot.getVMOption("UseAES").getValue());
        }
        catch (RuntimeException | LinkageError e) {
            return true;
        }
    }

    private static SSLContext sslContext(List<X509Certificate> chain, Path certFile, Path keyFile, Path caFile)
    {
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
