package dev.jloop.dist;

import dev.jloop.testkit.CiAssumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Power cuts of a VM that runs jloop ({@code src/test/vm/powercut.sh}): the guest serves raw virtio
 * disks through ublk and through the kernel's NBD client, with each backend, and writes files on ext4
 * that it lists only once their fsync returned; qemu is killed at a random moment, and every listed file
 * must be intact in the disk it left behind. Each disk is a test of its own ("a cut"); its recovered
 * image is checked again here as {@link VmIT} checks the images its scenarios leave.
 *
 * <p>Two boots (three cuts each) cover every backend through both frontends; more with
 * {@code -Djloop.powercut.boots=N} or {@code POWERCUT_BOOTS=N}.
 */
final class VmPowerCutIT
{
    private static final Path SCRIPT = Path.of("src", "test", "vm", "powercut.sh");
    private static final Path OUT = Path.of("target", "powercut");
    private static final int CUTS_PER_BOOT = 3;
    // powercut.sh: 0 every cut passed, 1 a cut failed, 2 a boot failed, 77 a prerequisite is missing.
    private static final int UNAVAILABLE = 77;
    // Each boot's own limit (VM_TIMEOUT, 900 s) and its checks; once more for installing qemu and downloading the kernel.
    private static final long SECONDS_PER_BOOT = 1000;

    private static int boots;
    private static Exec harness;

    @BeforeAll
    static void cutThePower()
    {
        boots = Integer.parseInt(System.getProperty("jloop.powercut.boots", System.getenv().getOrDefault("POWERCUT_BOOTS", "2")));
        harness = Exec.run(SECONDS_PER_BOOT * (boots + 1), null, Map.of(),
                "bash", SCRIPT.toString(), "-o", OUT.toString(), "-b", Integer.toString(boots), JloopProcess.home().toString());
        CiAssumptions.assumeAvailable(harness.exitCode() != UNAVAILABLE, "power-cut tests: " + harness.stderr().strip());
    }

    @Test
    void everyBootWasCut()
            throws IOException
    {
        assertEquals(boots * CUTS_PER_BOOT, cuts().size(), () -> "cuts in " + OUT + "\n" + harness.stderr());
        assertTrue(harness.exitCode() == 0 || harness.exitCode() == 1, () -> "powercut.sh exit " + harness.exitCode() + "\n" + harness.stderr());
    }

    @Test
    void checkerFailsOnDoctoredImages()
    {
        Path rc = OUT.resolve("self-check").resolve("rc");
        assertTrue(Files.exists(rc), () -> "no self-check: no cut passed\n" + harness.stderr());
        assertEquals("0", read(rc), () -> "the checker passed a doctored image\n" + read(rc.resolveSibling("log")));
    }

    @TestFactory
    Stream<DynamicNode> acknowledgedDataSurvives()
            throws IOException
    {
        List<DynamicNode> nodes = new ArrayList<>();
        for (Path cut : cuts()) {
            List<DynamicNode> tests = new ArrayList<>();
            tests.add(DynamicTest.dynamicTest("every fsynced file intact", () -> assertEquals("0", read(cut.resolve("rc")),
                    () -> cut.getFileName() + " failed\n" + read(cut.resolve("log")) + "\n--- powercut.sh\n" + harness.stderr())));
            Path image = cut.resolve("recovered.img");
            Path manifest = cut.resolve("recovered.img.sha256");
            if (Files.exists(image) && Files.exists(manifest)) {
                tests.add(DynamicTest.dynamicTest("recovered.img on the host", () -> VmIT.assertImageHolds(image, manifest)));
            }
            nodes.add(DynamicContainer.dynamicContainer(read(cut.resolve("setup")), tests.stream()));
        }
        return nodes.stream();
    }

    private static List<Path> cuts()
            throws IOException
    {
        if (!Files.isDirectory(OUT)) {
            return List.of();
        }
        try (Stream<Path> files = Files.list(OUT)) {
            return files.filter(file -> file.getFileName().toString().startsWith("cut-")).sorted().toList();
        }
    }

    private static String read(Path file)
    {
        try {
            return Files.exists(file) ? Files.readString(file).strip() : "(no " + file + ")";
        }
        catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
