package dev.jloop.nbd;

import dev.jloop.api.FrontendConfig;

import java.util.HashMap;
import java.util.Map;

/**
 * Frontend configs for tests: a free TCP port on the loopback address unless the options say otherwise,
 * and the connection loop named by the system property {@value #LOOP_PROPERTY} and its receive named by
 * {@value #RECV_PROPERTY} unless they name them (the build runs the transmission tests with each).
 */
final class NbdTestConfig
{
    static final String LOOP_PROPERTY = "jloop.test.nbd-loop";
    static final String RECV_PROPERTY = "jloop.test.nbd-recv";

    private NbdTestConfig() {}

    static FrontendConfig tcp(Map<String, String> options)
    {
        Map<String, String> withListen = new HashMap<>(options);
        if (!withListen.containsKey(NbdSettings.SOCKET) && !withListen.containsKey(NbdSettings.STDIO)) {
            withListen.putIfAbsent(NbdSettings.LISTEN, "127.0.0.1:0");
        }
        String loop = System.getProperty(LOOP_PROPERTY);
        if (loop != null) {
            withListen.putIfAbsent(NbdSettings.NBD_LOOP, loop);
        }
        String receive = System.getProperty(RECV_PROPERTY);
        if (receive != null) {
            withListen.putIfAbsent(NbdSettings.NBD_RECV, receive);
        }
        return FrontendConfig.of(withListen);
    }
}
