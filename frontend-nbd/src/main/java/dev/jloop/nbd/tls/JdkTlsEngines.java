package dev.jloop.nbd.tls;

import com.sun.management.HotSpotDiagnosticMXBean;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
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
 * TLS on the JDK's own implementation (JSSE), where BoringSSL's native library does not load or
 * {@code --tls-engine jdk} asks for it.
 *
 * <p>The server, not the client, picks the cipher suite, from the JDK's enabled ones in an order
 * made for bulk data ({@link #preferredOrder}): AES-128-GCM first where the JVM runs AES on the
 * processor's AES instructions, ChaCha20-Poly1305 first where it cannot. GnuTLS clients (nbdcopy,
 * qemu) list AES-256-GCM first, which costs a tenth more per byte; ChaCha20 has no intrinsic before
 * JDK 20 and runs at less than a tenth of AES-GCM's speed there.
 */
final class JdkTlsEngines
        implements TlsEngines
{
    private final SSLContext context;
    private final String[] cipherSuites;
    private final boolean verifyPeer;

    private JdkTlsEngines(SSLContext context, boolean verifyPeer)
    {
        this.context = requireNonNull(context, "context is null");
        this.cipherSuites = preferredOrder(context.getDefaultSSLParameters().getCipherSuites(), aesIntrinsics());
        this.verifyPeer = verifyPeer;
    }

    /**
     * The engines for these credentials, with the JIT's warm-up of the record path started in the
     * background ({@link TlsWarmUp}).
     *
     * @param authorities the CAs client certificates must chain to; null when clients need none
     */
    static JdkTlsEngines create(PrivateKey key, List<X509Certificate> chain, List<X509Certificate> authorities)
            throws GeneralSecurityException, IOException
    {
        char[] password = new char[0];
        KeyStore keys = KeyStore.getInstance("PKCS12");
        keys.load(null, null);
        keys.setKeyEntry("server", key, password, chain.toArray(new Certificate[0]));
        KeyManagerFactory keyManagers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keyManagers.init(keys, password);

        TrustManager[] trustManagers = null;
        if (authorities != null) {
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
        JdkTlsEngines engines = new JdkTlsEngines(context, authorities != null);
        TlsWarmUp.startOnce(context, engines.cipherSuites, chain.get(0));
        return engines;
    }

    @Override
    public String name()
    {
        return "jdk";
    }

    @Override
    public SSLEngine newEngine()
    {
        return serverEngine(context, cipherSuites, verifyPeer);
    }

    /** A server's engine of {@code context} that picks from {@code cipherSuites} in their order. */
    static SSLEngine serverEngine(SSLContext context, String[] cipherSuites, boolean needClientAuth)
    {
        SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        SSLParameters parameters = engine.getSSLParameters();
        parameters.setCipherSuites(cipherSuites);
        parameters.setUseCipherSuitesOrder(true);
        parameters.setNeedClientAuth(needClientAuth);
        engine.setSSLParameters(parameters);
        return engine;
    }

    /** The JDK's AES-GCM: JDK 17 about 3.7 against 2.9 GB/s a core on heap and direct buffers; JDK 25 6 against 2.7 when wrapping. */
    @Override
    public boolean directBuffers()
    {
        return false;
    }

    @Override
    public void release(SSLEngine engine)
    {
        // all of it is on the heap
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

}
