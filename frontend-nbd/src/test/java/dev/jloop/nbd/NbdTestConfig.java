package dev.jloop.nbd;

import dev.jloop.api.FrontendConfig;

import java.util.HashMap;
import java.util.Map;

/** Frontend configs for tests: a free TCP port on the loopback address unless the options say otherwise. */
final class NbdTestConfig
{
    private NbdTestConfig() {}

    static FrontendConfig tcp(Map<String, String> options)
    {
        Map<String, String> withListen = new HashMap<>(options);
        if (!withListen.containsKey(NbdSettings.SOCKET) && !withListen.containsKey(NbdSettings.STDIO)) {
            withListen.putIfAbsent(NbdSettings.LISTEN, "127.0.0.1:0");
        }
        return FrontendConfig.of(withListen);
    }
}
