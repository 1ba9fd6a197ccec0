package dev.jloop.nbd.tls;

import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.netty.util.ReferenceCountUtil;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLException;

import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.List;

/**
 * TLS on BoringSSL, through netty's {@link SSLEngine} over netty-tcnative, whose jar carries
 * BoringSSL built for the platform. Its AES-GCM runs on the processor's vector AES and carry-less
 * multiply, at about twice the speed of the JDK's (docs/nbd.md, "TLS"). This is the only class that
 * names netty, so nothing of it loads unless TLS on BoringSSL is chosen.
 *
 * <p>TLS 1.3 and 1.2, as the JDK serves by default. BoringSSL picks the suite itself: AES-GCM where
 * the processor has AES instructions, ChaCha20-Poly1305 where it has not.
 */
final class BoringSslEngines
        implements TlsEngines
{
    private final SslContext context;

    private BoringSslEngines(SslContext context)
    {
        this.context = context;
    }

    /** Whether BoringSSL's native library loads on this machine; when not, why. */
    static Throwable unavailabilityCause()
    {
        return OpenSsl.isAvailable() ? null : OpenSsl.unavailabilityCause();
    }

    /** @param authorities the CAs client certificates must chain to; null when clients need none */
    static BoringSslEngines create(PrivateKey key, List<X509Certificate> chain, List<X509Certificate> authorities)
            throws SSLException
    {
        SslContextBuilder builder = SslContextBuilder.forServer(key, chain.toArray(new X509Certificate[0]))
                .sslProvider(SslProvider.OPENSSL_REFCNT)
                .protocols("TLSv1.3", "TLSv1.2");
        if (authorities != null) {
            builder.trustManager(authorities.toArray(new X509Certificate[0])).clientAuth(ClientAuth.REQUIRE);
        }
        return new BoringSslEngines(builder.build());
    }

    @Override
    public String name()
    {
        return "boringssl";
    }

    @Override
    public SSLEngine newEngine()
    {
        // The ciphertext buffers are direct: the engine then needs no buffers of its own but for the handshake.
        return context.newEngine(UnpooledByteBufAllocator.DEFAULT);
    }

    @Override
    public boolean directBuffers()
    {
        return true;
    }

    @Override
    public void release(SSLEngine engine)
    {
        ReferenceCountUtil.release(engine);
    }
}
