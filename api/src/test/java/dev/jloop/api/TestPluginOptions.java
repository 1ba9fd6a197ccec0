package dev.jloop.api;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestPluginOptions
{
    private static final List<PluginOption> DECLARED = List.of(
            PluginOption.of("queues", PluginOption.Type.COUNT, "1", "queues", "--queues 2"),
            PluginOption.of("pool", PluginOption.Type.SIZE, "64M", "pool", "--pool 1G"),
            PluginOption.of("cert", PluginOption.Type.PATH, null, "certificate", "--cert server.pem"),
            PluginOption.flag("poll", "poll", "--poll"),
            PluginOption.choice("tls", List.of("off", "on", "require"), "off", "TLS", "--tls on"));

    @Test
    void givenValuesDefaultsAndTypes()
    {
        PluginOptions options = PluginOptions.parse("the test plugin", DECLARED, Map.of("queues", " 4 ", "pool", "1G", "poll", "true"));
        assertEquals(4, options.count("queues", 0));
        assertEquals(1L << 30, options.size("pool", 0));
        assertTrue(options.flag("poll"));
        assertEquals("off", options.string("tls"), "the default");
        assertFalse(options.isSet("cert"));
        assertNull(options.path("cert"));

        PluginOptions defaults = PluginOptions.parse("the test plugin", DECLARED, Map.of("cert", "pki/cert.pem"));
        assertEquals(1, defaults.count("queues", 0));
        assertEquals(64L << 20, defaults.size("pool", 0));
        assertFalse(defaults.flag("poll"));
        assertEquals(Path.of("pki/cert.pem").toAbsolutePath(), defaults.path("cert"));
    }

    @Test
    void unknownKeysAreRefusedNamingWhatThePluginTakes()
    {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PluginOptions.parse("the test plugin", DECLARED, Map.of("queue", "2")));
        assertEquals("the test plugin takes no option 'queue'; it takes: cert, poll, pool, queues, tls", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("the sync backend", List.of(), Map.of("uring-sqpoll", "true")));
        assertEquals("the sync backend takes no option 'uring-sqpoll'", e.getMessage());
    }

    @Test
    void malformedValuesAreRefusedWithTheExample()
    {
        assertEquals("--queues: bad number '-1': expected a whole number, 0 or more (e.g. --queues 2)",
                assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", DECLARED, Map.of("queues", "-1"))).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", DECLARED, Map.of("pool", "12X")))
                .getMessage().startsWith("--pool: bad size '12X'"));
        assertEquals("--tls: expected off, on, require, not 'maybe' (e.g. --tls on)",
                assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", DECLARED, Map.of("tls", "maybe"))).getMessage());
        assertEquals("--poll: expected true or false, not 'yes' (e.g. --poll)",
                assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", DECLARED, Map.of("poll", "yes"))).getMessage());
    }

    @Test
    void declarationsAreChecked()
    {
        assertThrows(IllegalArgumentException.class, () -> PluginOption.of("Bad_Key", PluginOption.Type.STRING, null, "h", "e"));
        assertThrows(IllegalArgumentException.class, () -> PluginOption.of("n", PluginOption.Type.COUNT, "x", "h", "--n 1"), "a bad default");
        assertThrows(IllegalArgumentException.class, () -> PluginOption.choice("c", List.of(), null, "h", "--c"));
        assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", List.of(DECLARED.get(0), DECLARED.get(0)), Map.of()));
        PluginOptions options = PluginOptions.parse("p", DECLARED, Map.of());
        assertThrows(IllegalStateException.class, () -> options.string("undeclared"), "reading an undeclared key is the plugin's bug");
    }

    @Test
    void sizesAndCounts()
    {
        assertEquals(4096, Sizes.parse("4096"));
        assertEquals(512L << 10, Sizes.parse("512K"));
        assertEquals(2L << 30, Sizes.parse("2GiB"));
        assertEquals(1L << 40, Sizes.parse("1t"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parse("1.5G"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parse("99999999999E"));
        assertEquals(7, Sizes.parseCount("7"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parseCount("3000000000"));
        assertEquals("1 GiB", Sizes.format(1L << 30));
        assertEquals("1.5 MiB", Sizes.format(3L << 19));
        assertEquals("512 B", Sizes.format(512));
    }

    @Test
    void durationsAreSecondsUnlessTheyNameAUnit()
    {
        assertEquals(10_000, Sizes.parseMillis("10"));
        assertEquals(500, Sizes.parseMillis("500ms"));
        assertEquals(30_000, Sizes.parseMillis(" 30s "));
        assertEquals(120_000, Sizes.parseMillis("2m"));
        assertEquals(3_600_000, Sizes.parseMillis("1H"));
        assertEquals(0, Sizes.parseMillis("0"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parseMillis("1.5s"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parseMillis("-1"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parseMillis("99999999999999999h"));

        List<PluginOption> declared = List.of(PluginOption.of("reply-timeout", PluginOption.Type.DURATION, "60", "timeout", "--reply-timeout 30s"));
        assertEquals(60_000, PluginOptions.parse("p", declared, Map.of()).millis("reply-timeout", 0));
        assertEquals(250, PluginOptions.parse("p", declared, Map.of("reply-timeout", "250ms")).millis("reply-timeout", 0));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PluginOptions.parse("p", declared, Map.of("reply-timeout", "soon")));
        assertEquals("--reply-timeout: bad duration 'soon': expected a whole number of seconds, or one with ms, s, m or h, e.g. 30s (e.g. --reply-timeout 30s)",
                e.getMessage());
    }
}
