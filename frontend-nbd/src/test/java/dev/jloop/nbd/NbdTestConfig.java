package dev.jloop.nbd;

import dev.jloop.api.FrontendConfig;

import java.util.HashMap;
import java.util.Map;

/**
 * Frontend configs for tests: a free TCP port on the loopback address unless the options say otherwise,
 * and the connection loop named by the system property {@value #LOOP_PROPERTY} unless they name one
 * (the build runs the transmission tests once with each loop).
 */
final class NbdTestConfig
{
    static final String LOOP_PROPERTY = "jloop.test.nbd-loop";

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
        return FrontendConfig.of(withListen);
    }
}
