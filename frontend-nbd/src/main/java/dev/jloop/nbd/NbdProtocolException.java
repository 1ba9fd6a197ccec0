package dev.jloop.nbd;

import java.io.IOException;

/** The peer broke the protocol in a way that ends its connection (bad magic, unknown export on EXPORT_NAME). */
final class NbdProtocolException
        extends IOException
{
    NbdProtocolException(String message)
    {
        super(message);
    }
}
