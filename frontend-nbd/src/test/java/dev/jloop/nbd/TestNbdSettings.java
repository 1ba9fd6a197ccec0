package dev.jloop.nbd;

import dev.jloop.nbd.tls.NbdTls;
import dev.jloop.nbd.tls.TlsSettings;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The frontend's options, parsed without starting a server. */
class TestNbdSettings
{
    @Test
    void defaults()
    {
        NbdSettings settings = NbdSettings.fromOptions(Map.of());
        assertEquals(128 << 20, settings.maxInflightBytes());
        assertEquals(256, settings.maxInflightRequests());
        assertEquals(512L << 20, settings.pagePoolBytes());
        assertEquals(64L << 20, settings.registeredBytes());
        assertEquals(30_000, settings.closeTimeoutMillis());
        assertEquals(0, settings.maxConnections());
        assertEquals(10_000, settings.handshakeTimeoutMillis());
        assertEquals(60_000, settings.replyTimeoutMillis());
        assertFalse(settings.stdio());
        assertFalse(settings.socketActivation());
        assertEquals(TlsSettings.OFF, settings.tls());
    }

    @Test
    void sizesTakeSuffixesAndTimesTakeZero()
    {
        NbdSettings settings = NbdSettings.fromOptions(Map.of(
                NbdSettings.MAX_INFLIGHT_BYTES, "16M",
                NbdSettings.PAGE_POOL_BYTES, " 2g ",
                NbdSettings.REGISTERED_BYTES, "512K",
                NbdSettings.REPLY_TIMEOUT_MS, "0",
                NbdSettings.MAX_CONNECTIONS, "4"));
        assertEquals(16 << 20, settings.maxInflightBytes());
        assertEquals(2L << 30, settings.pagePoolBytes());
        assertEquals(512 << 10, settings.registeredBytes());
        assertEquals(0, settings.replyTimeoutMillis());
        assertEquals(4, settings.maxConnections());
        // a budget beyond an int is the largest int, never a negative one
        assertEquals(Integer.MAX_VALUE, NbdSettings.fromOptions(Map.of(NbdSettings.MAX_INFLIGHT_BYTES, "4G")).maxInflightBytes());
    }

    @Test
    void mistakesAreRefusedByName()
    {
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(Map.of("max-inflight", "1M")));
        assertTrue(unknown.getMessage().contains("unknown nbd option 'max-inflight'"), unknown.getMessage());
        assertTrue(unknown.getMessage().contains(NbdSettings.MAX_INFLIGHT_BYTES), unknown.getMessage());

        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(Map.of(NbdSettings.CLOSE_TIMEOUT_MS, "0")));
        assertEquals("nbd option close-timeout-ms must be positive: 0", zero.getMessage());
        IllegalArgumentException size = assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(Map.of(NbdSettings.PAGE_POOL_BYTES, "1T")));
        assertEquals("nbd option page-pool-bytes is not a size: 1T", size.getMessage());
        IllegalArgumentException flag = assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(Map.of(NbdSettings.TLS_VERIFY_PEER, "maybe")));
        assertEquals("nbd option tls-verify-peer must be true or false: maybe", flag.getMessage());
    }

    @Test
    void tlsFilesGivenOnTheirOwnWinOverTheDirectory()
    {
        TlsSettings tls = tlsWithDirectory("require", NbdSettings.TLS_KEY, "/secret/key.pem");
        assertEquals(NbdTls.Mode.REQUIRE, tls.mode());
        assertEquals(Path.of("/etc/pki/jloop/server-cert.pem"), tls.cert());
        assertEquals(Path.of("/secret/key.pem"), tls.key());
        // the directory's CA is for verifying clients, which was not asked for
        assertNull(tls.ca());
        assertFalse(tls.verifyPeer());

        TlsSettings verifying = tlsWithDirectory("on", NbdSettings.TLS_VERIFY_PEER, "yes");
        assertEquals(NbdTls.Mode.ON, verifying.mode());
        assertEquals(Path.of("/etc/pki/jloop/ca-cert.pem"), verifying.ca());
        assertTrue(verifying.verifyPeer());
    }

    /** The TLS settings of {@code mode} with the certificates in /etc/pki/jloop, and one more option. */
    private static TlsSettings tlsWithDirectory(String mode, String key, String value)
    {
        return NbdSettings.fromOptions(Map.of(NbdSettings.TLS, mode, NbdSettings.TLS_CERTIFICATES, "/etc/pki/jloop", key, value)).tls();
    }
}
