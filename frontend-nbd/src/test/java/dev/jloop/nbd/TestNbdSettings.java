package dev.jloop.nbd;

import dev.jloop.api.FrontendConfig;
import dev.jloop.api.PluginOption;
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
        assertEquals("127.0.0.1", settings.host());
        assertEquals(10809, settings.port());
        assertNull(settings.socket());
        assertFalse(settings.privateSocket());
        assertEquals(32 << 20, settings.maxInflightBytes());
        assertEquals(256, settings.maxInflightRequests());
        assertEquals(512L << 20, settings.pagePoolBytes());
        assertEquals(0, settings.registeredBytes(), "nothing pinned unless asked for");
        assertEquals(30_000, settings.closeTimeoutMillis());
        assertEquals(0, settings.maxConnections());
        assertEquals(10_000, settings.handshakeTimeoutMillis());
        assertEquals(60_000, settings.replyTimeoutMillis());
        assertFalse(settings.stdio());
        assertFalse(settings.socketActivation());
        assertEquals(TlsSettings.OFF, settings.tls());
    }

    @Test
    void everyOptionIsDeclaredForTheCommandLine()
    {
        assertEquals(NbdSettings.OPTIONS, new NbdFrontendFactory().options());
        for (PluginOption option : NbdSettings.OPTIONS) {
            assertTrue(option.example().contains("--" + option.key()), option + " has an example that shows it: " + option.example());
        }
    }

    @Test
    void sizesTakeSuffixesAndTimesTakeUnitsOrZero()
    {
        NbdSettings settings = NbdSettings.fromOptions(Map.of(
                NbdSettings.MAX_INFLIGHT_BYTES, "16M",
                NbdSettings.PAGE_POOL_BYTES, " 2g ",
                NbdSettings.REGISTERED_BYTES, "512K",
                NbdSettings.REPLY_TIMEOUT, "0",
                NbdSettings.HANDSHAKE_TIMEOUT, "250ms",
                NbdSettings.CLOSE_TIMEOUT, "2m",
                NbdSettings.MAX_CONNECTIONS, "4"));
        assertEquals(16 << 20, settings.maxInflightBytes());
        assertEquals(2L << 30, settings.pagePoolBytes());
        assertEquals(512 << 10, settings.registeredBytes());
        assertEquals(0, settings.replyTimeoutMillis());
        assertEquals(250, settings.handshakeTimeoutMillis());
        assertEquals(120_000, settings.closeTimeoutMillis());
        assertEquals(4, settings.maxConnections());
        // a budget beyond an int is the largest int, never a negative one
        assertEquals(Integer.MAX_VALUE, NbdSettings.fromOptions(Map.of(NbdSettings.MAX_INFLIGHT_BYTES, "4G")).maxInflightBytes());
    }

    @Test
    void whereToServe()
    {
        NbdSettings tcp = NbdSettings.fromOptions(Map.of(NbdSettings.LISTEN, "[::1]:0"));
        assertEquals("::1", tcp.host());
        assertEquals(0, tcp.port());
        assertEquals("0.0.0.0", NbdSettings.fromOptions(Map.of(NbdSettings.LISTEN, ":10810")).host());
        assertEquals(Path.of("/tmp/x.sock"), NbdSettings.fromOptions(Map.of(NbdSettings.SOCKET, "/tmp/x.sock")).socket());

        assertTrue(NbdSettings.from(new FrontendConfig(Map.of(), true), Map.of()).privateSocket(), "--run without an address: a private socket");
        assertFalse(NbdSettings.from(new FrontendConfig(Map.of(NbdSettings.LISTEN, "127.0.0.1:0"), true), Map.of()).privateSocket(),
                "--run with an address serves there");

        String pid = Long.toString(ProcessHandle.current().pid());
        assertTrue(NbdSettings.from(FrontendConfig.of(Map.of()), Map.of("LISTEN_PID", pid, "LISTEN_FDS", "1")).socketActivation());
        assertFalse(NbdSettings.from(FrontendConfig.of(Map.of()), Map.of("LISTEN_PID", "1", "LISTEN_FDS", "1")).socketActivation(),
                "LISTEN_FDS meant for another process");
    }

    @Test
    void mistakesAreRefusedByName()
    {
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(Map.of("max-inflight", "1M")));
        assertTrue(unknown.getMessage().startsWith("the nbd frontend takes no option 'max-inflight'"), unknown.getMessage());
        assertTrue(unknown.getMessage().contains(NbdSettings.MAX_INFLIGHT_BYTES), unknown.getMessage());

        assertMistake("--close-timeout must be more than 0", Map.of(NbdSettings.CLOSE_TIMEOUT, "0"));
        assertMistake("--page-pool-bytes: bad size '1.5G': expected a number of bytes with an optional K, M, G, T, P or E suffix, e.g. 1G (e.g. --page-pool-bytes 1G)",
                Map.of(NbdSettings.PAGE_POOL_BYTES, "1.5G"));
        assertMistake("--tls-verify-peer: expected true or false, not 'maybe' (e.g. --tls require --tls-certificates DIR --tls-verify-peer)",
                Map.of(NbdSettings.TLS_VERIFY_PEER, "maybe"));
        assertMistake("bad --listen 'localhost': expected HOST:PORT, e.g. 127.0.0.1:10809", Map.of(NbdSettings.LISTEN, "localhost"));
        assertMistake("bad --listen ':70000': port must be a number from 0 to 65535", Map.of(NbdSettings.LISTEN, ":70000"));
        assertMistake("--socket and --listen exclude each other: serve on a Unix socket or on TCP",
                Map.of(NbdSettings.LISTEN, ":1", NbdSettings.SOCKET, "/tmp/s"));
        assertMistake("--stdio serves on standard input/output: drop --socket and --listen", Map.of(NbdSettings.STDIO, "true", NbdSettings.SOCKET, "/tmp/s"));
        IllegalArgumentException stdioRun = assertThrows(IllegalArgumentException.class,
                () -> NbdSettings.from(new FrontendConfig(Map.of(NbdSettings.STDIO, "true"), true), Map.of()));
        assertEquals("--stdio and --run exclude each other: --stdio serves the client that started jloop", stdioRun.getMessage());
        String pid = Long.toString(ProcessHandle.current().pid());
        IllegalArgumentException activated = assertThrows(IllegalArgumentException.class,
                () -> NbdSettings.from(FrontendConfig.of(Map.of(NbdSettings.SOCKET, "/tmp/s")), Map.of("LISTEN_PID", pid, "LISTEN_FDS", "1")));
        assertTrue(activated.getMessage().startsWith("started by socket activation"), activated.getMessage());
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

        TlsSettings verifying = tlsWithDirectory("on", NbdSettings.TLS_VERIFY_PEER, "true");
        assertEquals(NbdTls.Mode.ON, verifying.mode());
        assertEquals(Path.of("/etc/pki/jloop/ca-cert.pem"), verifying.ca());
        assertTrue(verifying.verifyPeer());
        assertEquals(NbdTls.Engine.AUTO, verifying.engine());
        assertEquals(NbdTls.Engine.JDK, tlsWithDirectory("on", NbdSettings.TLS_ENGINE, "jdk").engine());
        assertEquals(NbdTls.Engine.BORINGSSL, tlsWithDirectory("require", NbdSettings.TLS_ENGINE, "boringssl").engine());

        assertMistake("TLS certificates, peer verification or a TLS engine given, but --tls is off: add --tls on or --tls require",
                Map.of(NbdSettings.TLS_ENGINE, "jdk"));
        assertMistake("TLS certificates, peer verification or a TLS engine given, but --tls is off: add --tls on or --tls require",
                Map.of(NbdSettings.TLS_CERTIFICATES, "/etc/pki/jloop"));
        assertMistake("--tls on needs a certificate and key: give --tls-cert and --tls-key, or a --tls-certificates directory",
                Map.of(NbdSettings.TLS, "on", NbdSettings.TLS_CERT, "/c.pem"));
        assertMistake("--tls-verify-peer needs the CA that signs client certificates: give --tls-ca or --tls-certificates",
                Map.of(NbdSettings.TLS, "on", NbdSettings.TLS_CERT, "/c.pem", NbdSettings.TLS_KEY, "/k.pem", NbdSettings.TLS_VERIFY_PEER, "true"));
    }

    private static void assertMistake(String message, Map<String, String> options)
    {
        assertEquals(message, assertThrows(IllegalArgumentException.class, () -> NbdSettings.fromOptions(options)).getMessage());
    }

    /** The TLS settings of {@code mode} with the certificates in /etc/pki/jloop, and one more option. */
    private static TlsSettings tlsWithDirectory(String mode, String key, String value)
    {
        return NbdSettings.fromOptions(Map.of(NbdSettings.TLS, mode, NbdSettings.TLS_CERTIFICATES, "/etc/pki/jloop", key, value)).tls();
    }
}
