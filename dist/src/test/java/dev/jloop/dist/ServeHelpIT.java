package dev.jloop.dist;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code jloop serve --help} describes every option with an example. */
class ServeHelpIT
{
    // "  -r, --read-only" or "      --backend=NAME"; wrapped text is indented further
    private static final Pattern OPTION = Pattern.compile("^(?:  -\\w, |      )(--[a-z-]+)");

    @Test
    void everyOptionHasAnExample()
    {
        Exec help = Exec.run(60, null, Map.of(), JloopProcess.command("serve", "--help").toArray(String[]::new));
        assertEquals(0, help.exitCode(), help.stderr());
        List<String> lines = help.stdout().lines().toList();
        List<String> options = new ArrayList<>();
        List<String> withoutExample = new ArrayList<>();
        for (int i = 0; i < lines.size(); i++) {
            Matcher matcher = OPTION.matcher(lines.get(i));
            if (!matcher.find()) {
                continue;
            }
            String option = matcher.group(1);
            options.add(option);
            if (option.equals("--help") || option.equals("--version")) {
                continue;
            }
            boolean example = false;
            for (int j = i; j < lines.size() && (j == i || !OPTION.matcher(lines.get(j)).find()); j++) {
                example |= lines.get(j).contains("e.g. ");
            }
            if (!example) {
                withoutExample.add(option);
            }
        }
        for (String expected : List.of("--export", "--tls", "--tls-cert", "--tls-key", "--tls-ca", "--tls-certificates", "--tls-verify-peer", "--tls-engine",
                "--run", "--stdio", "--max-connections", "--handshake-timeout", "--listen", "--socket", "--size", "--read-only")) {
            assertTrue(options.contains(expected), expected + " missing from:\n" + help.stdout());
        }
        assertEquals(List.of(), withoutExample, "options without an example in:\n" + help.stdout());
        assertTrue(help.stdout().replaceAll("\\s+", " ").contains("PSK is not offered"), help.stdout());
    }
}
