package dev.jloop.nbd.tls;

import dev.jloop.nbd.TestKeys;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;

class TestTlsWarmUp
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path keys;

    /** The warm-up's own handshake and records complete, with the suite TLS 1.3 clients will get from this server. */
    @Test
    void recordsGoThroughWithTheServersFirstSuite()
            throws Exception
    {
        TestKeys server = TestKeys.create(keys, "server", "EC");
        KeyManagerFactory keyManagers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keyManagers.init(server.keyStore, server.password());
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keyManagers.getKeyManagers(), null, null);
        String[] suites = JdkTlsEngines.preferredOrder(context.getDefaultSSLParameters().getCipherSuites(), true);
        assertEquals("TLS_AES_128_GCM_SHA256", new TlsWarmUp(context, suites, server.x509).warmUp(500));
        String[] withoutAes = JdkTlsEngines.preferredOrder(context.getDefaultSSLParameters().getCipherSuites(), false);
        assertEquals("TLS_CHACHA20_POLY1305_SHA256", new TlsWarmUp(context, withoutAes, server.x509).warmUp(500));
    }
}
