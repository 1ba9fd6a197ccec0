package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The guest scenarios of {@code src/test/vm} (the kernel's NBD client, ...) against the assembled
 * distribution, all in one boot of a kernel that has the modules this machine's kernel may lack:
 * {@code vm-run.sh} boots it under qemu and leaves, per scenario, an exit code, a log and a work
 * directory. Each scenario is a test of its own; every ext4 image a scenario leaves with a manifest
 * ({@code NAME.img} + {@code NAME.img.sha256}) is checked again here, on the host, after the VM is gone.
 */
final class VmIT
{
    private static final Path SCENARIO_DIRECTORY = Path.of("src", "test", "vm");
    private static final Path OUT = Path.of("target", "vm");
    private static final String SCENARIO_SUFFIX = "-scenario.sh";
    // vm-run.sh: 0 all passed, 1 a scenario failed, 2 the VM did not finish, 77 a prerequisite is missing.
    private static final int UNAVAILABLE = 77;
    // The VM's own limit (vm-run.sh, VM_TIMEOUT, 1500 s) plus time for installing qemu and downloading the kernel.
    private static final long HARNESS_TIMEOUT_SECONDS = 1800;
    private static final Pattern MANIFEST_LINE = Pattern.compile("([0-9a-f]{64})  (.+)");

    private static Exec harness;

    @BeforeAll
    static void bootOnce()
    {
        Path home = JloopProcess.home();
        harness = Exec.run(HARNESS_TIMEOUT_SECONDS, null, Map.of(),
                "bash", SCENARIO_DIRECTORY.resolve("vm-run.sh").toString(), "-o", OUT.toString(), home.toString());
        CiAssumptions.assumeAvailable(harness.exitCode() != UNAVAILABLE, "VM tests: " + harness.stderr().strip());
    }

    @TestFactory
    Stream<DynamicNode> scenarios()
            throws IOException
    {
        List<Path> scripts;
        try (Stream<Path> files = Files.list(SCENARIO_DIRECTORY)) {
            scripts = files.filter(file -> file.getFileName().toString().endsWith(SCENARIO_SUFFIX)).sorted().toList();
        }
        assertFalse(scripts.isEmpty(), "no *" + SCENARIO_SUFFIX + " in " + SCENARIO_DIRECTORY);
        List<DynamicNode> nodes = new ArrayList<>();
        for (Path script : scripts) {
            String file = script.getFileName().toString();
            String name = file.substring(0, file.length() - SCENARIO_SUFFIX.length());
            nodes.add(DynamicContainer.dynamicContainer(name, scenario(name)));
        }
        return nodes.stream();
    }

    private static Stream<DynamicNode> scenario(String name)
            throws IOException
    {
        Path directory = OUT.resolve(name);
        List<DynamicNode> tests = new ArrayList<>();
        tests.add(DynamicTest.dynamicTest("in the guest", () -> assertGuestPassed(name, directory)));
        Path work = directory.resolve("work");
        if (Files.isDirectory(work)) {
            try (Stream<Path> files = Files.list(work)) {
                for (Path image : files.filter(file -> file.toString().endsWith(".img")).sorted().toList()) {
                    Path manifest = Path.of(image + ".sha256");
                    if (Files.exists(manifest)) {
                        tests.add(DynamicTest.dynamicTest(image.getFileName() + " on the host", () -> assertImageHolds(image, manifest)));
                    }
                }
            }
        }
        return tests.stream();
    }

    private static void assertGuestPassed(String name, Path directory)
            throws IOException
    {
        Path rc = directory.resolve("rc");
        if (!Files.exists(rc)) {
            fail("scenario " + name + " has no result: the VM did not finish it (vm-run.sh exit " + harness.exitCode() + ")\n"
                    + tail(directory.resolve("log"), 60) + "\n--- vm-run.sh\n" + harness.stderr()
                    + "\n--- console\n" + tail(OUT.resolve("console.log"), 60));
        }
        assertEquals("0", Files.readString(rc).strip(), () -> "scenario " + name + " failed in the guest\n"
                + tail(directory.resolve("log"), 120) + "\n--- console\n" + tail(OUT.resolve("console.log"), 30));
    }

    /** fsck finds the image clean, and every file of the manifest has its recorded SHA-256 in it. */
    static void assertImageHolds(Path image, Path manifest)
            throws IOException
    {
        CiAssumptions.assumeCommand("e2fsck");
        CiAssumptions.assumeCommand("debugfs");
        Exec fsck = Exec.run(300, "e2fsck", "-fn", image.toString());
        assertEquals(0, fsck.exitCode(), () -> "e2fsck -fn " + image + "\n" + fsck.stdout() + fsck.stderr());

        List<String[]> entries = new ArrayList<>();
        for (String line : Files.readAllLines(manifest)) {
            Matcher matcher = MANIFEST_LINE.matcher(line);
            assertTrue(matcher.matches(), () -> "not a sha256sum line in " + manifest + ": " + line);
            entries.add(new String[] {matcher.group(1), matcher.group(2)});
        }
        assertFalse(entries.isEmpty(), "empty manifest " + manifest);

        // One debugfs for all files: it reads the ext4 image directly, no mount and no root needed.
        Path extracted = Files.createTempDirectory(image.getParent(), "extracted-");
        try {
            StringBuilder commands = new StringBuilder();
            for (int i = 0; i < entries.size(); i++) {
                commands.append("dump \"/").append(entries.get(i)[1]).append("\" \"").append(extracted.resolve(Integer.toString(i))).append("\"\n");
            }
            Path commandFile = extracted.resolve("commands");
            Files.writeString(commandFile, commands);
            Exec dump = Exec.run(300, "debugfs", "-f", commandFile.toString(), image.toString());
            assertEquals(0, dump.exitCode(), () -> "debugfs " + image + "\n" + dump.stdout() + dump.stderr());
            for (int i = 0; i < entries.size(); i++) {
                String[] entry = entries.get(i);
                Path file = extracted.resolve(Integer.toString(i));
                assertTrue(Files.exists(file), () -> entry[1] + " is missing from " + image + "\n" + dump.stderr());
                assertEquals(entry[0], sha256(file), () -> entry[1] + " in " + image + " differs from what the guest wrote");
            }
        }
        finally {
            Exec.run(60, "rm", "-rf", extracted.toString());
        }
    }

    private static String sha256(Path file)
            throws IOException
    {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            byte[] buffer = new byte[1 << 16];
            int n;
            while ((n = in.read(buffer)) > 0) {
                digest.update(buffer, 0, n);
            }
            return HexFormat.of().formatHex(digest.digest());
        }
        catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String tail(Path file, int lines)
    {
        if (!Files.exists(file)) {
            return "(no " + file + ")";
        }
        try {
            // A console log may hold bytes that are not UTF-8: decode leniently.
            List<String> all = new String(Files.readAllBytes(file), StandardCharsets.UTF_8).lines().toList();
            return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
