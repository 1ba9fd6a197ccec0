package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A throw-away PKI made with openssl for one test: a CA, a server certificate for localhost and
 * 127.0.0.1, and a client certificate, laid out as qemu and libnbd/nbdkit read them
 * ({@code server/} and {@code client/} each with {@code ca-cert.pem}).
 */
final class OpensslPki
{
    /** How the server's private key is written: the forms openssl and certtool produce. */
    enum KeyForm
    {
        /** openssl genrsa -traditional: BEGIN RSA PRIVATE KEY. */
        RSA_PKCS1,
        /** openssl genpkey RSA: BEGIN PRIVATE KEY. */
        RSA_PKCS8,
        /** openssl ecparam -genkey: BEGIN EC PARAMETERS, then BEGIN EC PRIVATE KEY. */
        EC_SEC1,
        /** openssl genpkey EC: BEGIN PRIVATE KEY. */
        EC_PKCS8,
    }

    final Path serverDirectory;
    final Path clientDirectory;
    /** A CA nobody trusts, and a client certificate it signed. */
    final Path strangerDirectory;

    private OpensslPki(Path root)
    {
        this.serverDirectory = root.resolve("server");
        this.clientDirectory = root.resolve("client");
        this.strangerDirectory = root.resolve("stranger");
    }

    static OpensslPki create(Path root, KeyForm serverKey)
            throws IOException
    {
        CiAssumptions.assumeCommand("openssl");
        OpensslPki pki = new OpensslPki(root);
        Files.createDirectories(pki.serverDirectory);
        Files.createDirectories(pki.clientDirectory);
        Files.createDirectories(pki.strangerDirectory);

        Path ca = root.resolve("ca");
        Files.createDirectories(ca);
        makeCa(ca, "jloop test CA");
        Files.copy(ca.resolve("ca-cert.pem"), pki.serverDirectory.resolve("ca-cert.pem"));
        Files.copy(ca.resolve("ca-cert.pem"), pki.clientDirectory.resolve("ca-cert.pem"));

        Path serverKeyFile = pki.serverDirectory.resolve("server-key.pem");
        switch (serverKey) {
            case RSA_PKCS1:
                openssl(root, "genrsa", "-traditional", "-out", serverKeyFile.toString(), "2048");
                break;
            case RSA_PKCS8:
                openssl(root, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", serverKeyFile.toString());
                break;
            case EC_SEC1:
                openssl(root, "ecparam", "-name", "prime256v1", "-genkey", "-out", serverKeyFile.toString());
                break;
            case EC_PKCS8:
                openssl(root, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", serverKeyFile.toString());
                break;
        }
        sign(root, ca, serverKeyFile, "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
                pki.serverDirectory.resolve("server-cert.pem"));

        Path clientKey = pki.clientDirectory.resolve("client-key.pem");
        openssl(root, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", clientKey.toString());
        sign(root, ca, clientKey, "jloop client", "extendedKeyUsage=clientAuth\n", pki.clientDirectory.resolve("client-cert.pem"));

        // The stranger trusts the real CA (so it accepts the server) but its own certificate comes from another CA.
        Path otherCa = root.resolve("other-ca");
        Files.createDirectories(otherCa);
        makeCa(otherCa, "some other CA");
        Files.copy(ca.resolve("ca-cert.pem"), pki.strangerDirectory.resolve("ca-cert.pem"));
        Path strangerKey = pki.strangerDirectory.resolve("client-key.pem");
        openssl(root, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", strangerKey.toString());
        sign(root, otherCa, strangerKey, "stranger", "extendedKeyUsage=clientAuth\n", pki.strangerDirectory.resolve("client-cert.pem"));
        return pki;
    }

    private static void makeCa(Path ca, String name)
    {
        openssl(ca, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", ca.resolve("ca-key.pem").toString(), "-out", ca.resolve("ca-cert.pem").toString());
    }

    private static void sign(Path work, Path ca, Path key, String commonName, String extensions, Path certificate)
            throws IOException
    {
        Path request = Files.createTempFile(work, "req-", ".csr");
        Path extensionFile = Files.createTempFile(work, "ext-", ".cnf");
        Files.writeString(extensionFile, extensions);
        openssl(work, "req", "-new", "-key", key.toString(), "-subj", "/CN=" + commonName, "-out", request.toString());
        openssl(work, "x509", "-req", "-in", request.toString(), "-CA", ca.resolve("ca-cert.pem").toString(),
                "-CAkey", ca.resolve("ca-key.pem").toString(), "-CAcreateserial", "-days", "2",
                "-extfile", extensionFile.toString(), "-out", certificate.toString());
    }

    private static void openssl(Path directory, String... args)
    {
        String[] command = new String[args.length + 1];
        command[0] = "openssl";
        System.arraycopy(args, 0, command, 1, args.length);
        Exec result = Exec.run(120, directory, java.util.Map.of(), command);
        if (result.exitCode() != 0) {
            throw new IllegalStateException(String.join(" ", command) + " failed:\n" + result.stdout() + result.stderr());
        }
    }
}
