package dev.jloop.dist;

import dev.jloop.dist.OpensslPki.KeyForm;
import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jloop serve --tls} against libnbd (GnuTLS) and qemu with certificates openssl makes for
 * each test: STARTTLS, {@code require} refusing clear-text clients, {@code on} serving both, client
 * certificates checked with {@code --tls-verify-peer}, and every key form openssl writes.
 */
class NbdTlsIT
        extends AbstractJloopIT
{
    @BeforeEach
    void requireNbdinfo()
    {
        CiAssumptions.assumeCommand("nbdinfo");
    }

    @Test
    void requireServesTlsClientsAndRefusesClearTextOnes()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), KeyForm.RSA_PKCS1);
        Path image = dir.resolve("disk.img");
        byte[] content = randomBytes(4 << 20, 1);
        Files.write(image, content);
        JloopProcess server = serve("--listen", "127.0.0.1:0", "--tls", "require", "--tls-certificates", pki.serverDirectory.toString(),
                image.toString());
        assertTrue(server.startLine().startsWith("jloop: serving nbds://127.0.0.1:"), "a URI that requires TLS: " + server.startLine());
        String port = port(server);
        String tlsUri = "nbds://127.0.0.1:" + port + "/?tls-certificates=" + pki.clientDirectory;

        String json = Exec.check(60, "nbdinfo", "--json", tlsUri);
        assertEquals("true", jsonValue(json, "TLS"), json);
        assertEquals(4L << 20, Long.parseLong(jsonValue(json, "export-size")), json);

        Path copy = dir.resolve("copy.img");
        Exec.check(120, "nbdcopy", tlsUri, copy.toString());
        assertArrayEquals(content, Files.readAllBytes(copy));

        String tlsObject = "tls-creds-x509,id=tls0,dir=" + pki.clientDirectory + ",endpoint=client";
        String nbdImage = "driver=nbd,host=127.0.0.1,port=" + port + ",tls-creds=tls0";
        String info = Exec.check(60, "qemu-img", "info", "--object", tlsObject, "--image-opts", nbdImage);
        assertTrue(info.contains("virtual size: 4 MiB (4194304 bytes)"), info);
        Exec.check(120, "qemu-img", "compare", "--object", tlsObject, "--image-opts", nbdImage,
                "driver=raw,file.driver=file,file.filename=" + image);
        // compare must see a difference too, or it proves nothing
        Path other = dir.resolve("other.img");
        byte[] changed = content.clone();
        changed[3 << 20] ^= 1;
        Files.write(other, changed);
        Exec differ = Exec.run(120, null, Map.of(), "qemu-img", "compare", "--object", tlsObject, "--image-opts", nbdImage,
                "driver=raw,file.driver=file,file.filename=" + other);
        assertEquals(1, differ.exitCode(), differ.stdout() + differ.stderr());

        // A client without TLS gets NBD_REP_ERR_TLS_REQD for everything, and says so.
        Exec plain = Exec.run(60, null, Map.of("LIBNBD_DEBUG", "1"), "nbdinfo", "nbd://127.0.0.1:" + port + "/");
        assertNotEquals(0, plain.exitCode(), plain.stdout());
        assertTrue(plain.stderr().contains("this server requires TLS"), plain.stderr());
        Exec plainList = Exec.run(60, "nbdinfo", "--list", "nbd://127.0.0.1:" + port + "/");
        assertNotEquals(0, plainList.exitCode(), plainList.stdout());
        Exec plainQemu = Exec.run(60, "qemu-img", "info", "nbd://127.0.0.1:" + port);
        assertNotEquals(0, plainQemu.exitCode(), plainQemu.stdout());
        assertTrue(plainQemu.stderr().contains("TLS negotiation required"), plainQemu.stderr());

        assertEquals(0, server.stop(), server.log());
    }

    /**
     * Bulk copies over TLS as backup tools make them: nbdcopy writes an image in and reads it out over
     * four connections with requests of many records (TLS 1.3), and qemu-img compares it through TLS
     * 1.2 (GnuTLS priority string), so that both protocol versions carry large reads.
     */
    @Test
    void bulkCopiesInAndOutOverTls13And12()
            throws Exception
    {
        CiAssumptions.assumeCommand("nbdcopy");
        CiAssumptions.assumeCommand("qemu-img");
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), KeyForm.EC_PKCS8);
        Path source = dir.resolve("source.img");
        byte[] content = randomBytes(32 << 20, 17);
        Files.write(source, content);
        Path image = dir.resolve("disk.img");
        JloopProcess server = serve("--listen", "127.0.0.1:0", "--size", "32M", "--tls", "require",
                "--tls-certificates", pki.serverDirectory.toString(), image.toString());
        String port = port(server);
        String tlsUri = "nbds://127.0.0.1:" + port + "/?tls-certificates=" + pki.clientDirectory;

        Exec.check(120, "nbdcopy", "--request-size=" + (4 << 20), source.toString(), tlsUri);
        Path copy = dir.resolve("copy.img");
        Exec.check(120, "nbdcopy", tlsUri, copy.toString());
        assertArrayEquals(content, Files.readAllBytes(copy));

        String tls12 = "tls-creds-x509,id=tls0,dir=" + pki.clientDirectory + ",endpoint=client,priority=NORMAL:-VERS-TLS1.3";
        String nbdImage = "driver=nbd,host=127.0.0.1,port=" + port + ",tls-creds=tls0";
        Exec.check(120, "qemu-img", "compare", "--object", tls12, "--image-opts", nbdImage,
                "driver=raw,file.driver=file,file.filename=" + source);
        assertEquals(0, server.stop(), server.log());
        assertArrayEquals(content, Files.readAllBytes(image));
    }

    @Test
    void onServesClearTextAndTlsClientsOnAUnixSocket()
            throws Exception
    {
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), KeyForm.EC_SEC1);
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        JloopProcess server = serve("--socket", socket.toString(), "--size", "2M", "--tls", "on",
                "--tls-cert", pki.serverDirectory.resolve("server-cert.pem").toString(),
                "--tls-key", pki.serverDirectory.resolve("server-key.pem").toString(), image.toString());
        String plain = Exec.check(60, "nbdinfo", "--json", "nbd+unix:///?socket=" + socket);
        assertEquals("false", jsonValue(plain, "TLS"), plain);
        String tls = Exec.check(60, "nbdinfo", "--json", "nbds+unix:///?socket=" + socket + "&tls-certificates=" + pki.clientDirectory);
        assertEquals("true", jsonValue(tls, "TLS"), tls);
        assertEquals(2L << 20, Long.parseLong(jsonValue(tls, "export-size")), tls);
        assertEquals(0, server.stop(), server.log());
    }

    @Test
    void verifyPeerWantsACertificateFromTheCa()
            throws Exception
    {
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), KeyForm.EC_PKCS8);
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        JloopProcess server = serve("--socket", socket.toString(), "--size", "1M", "--tls", "require",
                "--tls-certificates", pki.serverDirectory.toString(), "--tls-verify-peer", image.toString());
        String base = "nbds+unix:///?socket=" + socket + "&tls-certificates=";
        String json = Exec.check(60, "nbdinfo", "--json", base + pki.clientDirectory);
        assertEquals("true", jsonValue(json, "TLS"), json);

        Exec stranger = Exec.run(60, "nbdinfo", base + pki.strangerDirectory);
        assertNotEquals(0, stranger.exitCode(), stranger.stdout());
        // no client certificate at all: the server directory has only the CA and the server's own
        Exec anonymous = Exec.run(60, "nbdinfo", base + dir.resolve("pki/ca"));
        assertNotEquals(0, anonymous.exitCode(), anonymous.stdout());
        // SSLHandshakeException from the JDK, its subclass OpenSslHandshakeException from BoringSSL
        assertTrue(server.log().contains("HandshakeException"), server.log());
        // still serving the right client after refusing the others
        Exec.check(60, "nbdinfo", "--size", base + pki.clientDirectory);
        assertEquals(0, server.stop(), server.log());
    }

    @ParameterizedTest
    @EnumSource(KeyForm.class)
    void everyKeyFormOpensslWrites(KeyForm form)
            throws Exception
    {
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), form);
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("nbd.sock");
        JloopProcess server = serve("--socket", socket.toString(), "--size", "3M", "--tls", "require",
                "--tls-certificates", pki.serverDirectory.toString(), image.toString());
        String size = Exec.check(60, "nbdinfo", "--size", "nbds+unix:///?socket=" + socket + "&tls-certificates=" + pki.clientDirectory);
        assertEquals(String.valueOf(3 << 20), size.trim());
        assertEquals(0, server.stop(), server.log());
    }

    @Test
    void mistakesAreOneLineErrors()
            throws Exception
    {
        OpensslPki pki = OpensslPki.create(dir.resolve("pki"), KeyForm.RSA_PKCS8);
        Path image = dir.resolve("disk.img");
        Files.write(image, new byte[4096]);
        Path serverCert = pki.serverDirectory.resolve("server-cert.pem");

        assertOneLineError(serveOnLoopback("--tls", "require", image.toString()), "needs a certificate and key");
        assertOneLineError(serveOnLoopback("--tls-cert", serverCert.toString(), image.toString()), "--tls is off");
        assertOneLineError(serveOnLoopback("--tls", "maybe", image.toString()), "--tls: expected off, on, require, not 'maybe'");
        assertOneLineError(serveOnLoopback("--tls", "on", "--tls-cert", serverCert.toString(),
                "--tls-key", pki.clientDirectory.resolve("client-key.pem").toString(), image.toString()), "does not belong to the certificate");
        assertOneLineError(serveOnLoopback("--tls", "on", "--tls-cert", serverCert.toString(), "--tls-key", serverCert.toString(), image.toString()),
                "no PEM private key");
        assertOneLineError(serveOnLoopback("--tls", "on", "--tls-certificates", dir.resolve("nowhere").toString(), image.toString()),
                "cannot read tls-cert");
        Path encrypted = dir.resolve("encrypted-key.pem");
        Exec.check(60, "openssl", "pkey", "-in", pki.serverDirectory.resolve("server-key.pem").toString(), "-aes256",
                "-passout", "pass:secret", "-out", encrypted.toString());
        assertOneLineError(serveOnLoopback("--tls", "on", "--tls-cert", serverCert.toString(), "--tls-key", encrypted.toString(), image.toString()),
                "encrypted");
    }

    private static Exec serveOnLoopback(String... args)
    {
        List<String> all = new ArrayList<>(List.of("serve", "--listen", "127.0.0.1:0"));
        all.addAll(List.of(args));
        return jloop(all.toArray(String[]::new));
    }
}
