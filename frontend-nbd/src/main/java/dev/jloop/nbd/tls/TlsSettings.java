package dev.jloop.nbd.tls;

import java.nio.file.Path;

import static java.util.Objects.requireNonNull;

/**
 * Which TLS the server offers and where its credentials are, as the options say it once they are
 * checked; {@link NbdTls#load} reads the files.
 *
 * @param cert the server's certificate (chain), PEM; null when TLS is off
 * @param key its private key, PEM; null when TLS is off
 * @param ca the CA certificates, PEM, that client certificates must chain to; null when clients are
 *     not asked for a certificate
 * @param engine the implementation of TLS to serve it with
 */
public record TlsSettings(NbdTls.Mode mode, Path cert, Path key, Path ca, NbdTls.Engine engine)
{
    public static final TlsSettings OFF = new TlsSettings(NbdTls.Mode.OFF, null, null, null, NbdTls.Engine.AUTO);

    public TlsSettings
    {
        requireNonNull(mode, "mode is null");
        requireNonNull(engine, "engine is null");
        if (mode != NbdTls.Mode.OFF) {
            requireNonNull(cert, "cert is null");
            requireNonNull(key, "key is null");
        }
    }

    /** Whether clients must present a certificate signed by {@link #ca()}. */
    public boolean verifyPeer()
    {
        return ca != null;
    }
}
