package dev.jloop.nbd;

/** {@link TestNbdTls} with the server on the JDK's TLS ({@code --tls-engine jdk}). */
class TestNbdTlsOnJdk
        extends TestNbdTls
{
    @Override
    String engine()
    {
        return "jdk";
    }
}
