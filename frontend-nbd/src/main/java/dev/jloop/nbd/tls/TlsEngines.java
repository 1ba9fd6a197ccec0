package dev.jloop.nbd.tls;

import javax.net.ssl.SSLEngine;

/** Makes the server side's {@link SSLEngine}s of one TLS implementation, configured and in server mode. */
interface TlsEngines
{
    /** The implementation's name, as {@code --tls-engine} spells it. */
    String name();

    SSLEngine newEngine();

    /**
     * Whether the engine's records are faster on direct buffers than on heap ones, which decides
     * where a connection keeps its ciphertext: BoringSSL reads and writes direct memory in place, while
     * the JDK's AES-GCM runs faster on heap arrays.
     */
    boolean directBuffers();

    /** Frees what {@code engine} holds outside the Java heap; called once, after its connection closed. */
    void release(SSLEngine engine);
}
