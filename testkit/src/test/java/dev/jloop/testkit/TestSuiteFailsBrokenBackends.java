package dev.jloop.testkit;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.api.Kiocb;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.Test;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

/**
 * The conformance suite fails a broken backend, and says why: it runs, through the JUnit Platform
 * launcher, on backends that each break one promise, and the tests of that promise must fail with a
 * message (while tests that do not depend on it still pass). A suite that let every backend through
 * would keep a third party's honest one honest, but a broken one too.
 */
class TestSuiteFailsBrokenBackends
{
    @Test
    void failsABackendThatDropsWrites()
    {
        Map<String, List<TestExecutionResult>> results = run(DropsWrites.class);
        assertFailed(results, "writeAndReadAligned", "writeAndReadUnaligned", "writesAroundBlockBoundariesMatchModel",
                "unalignedDirectBuffersMatchModel", "alignedPagesReadAndWriteBack", "fsyncBothModes",
                "manyOverlappingRequestsInFlight", "completionsThatSubmitAgainUnderFullCapacityNeverHang");
        assertPassed(results, "capabilitiesAndSize", "readAtAndPastEndOfFile", "extentsOfSparseFile", "openFailuresNameTheFile");
    }

    @Test
    void failsABackendThatReadsStaleData()
    {
        Map<String, List<TestExecutionResult>> results = run(ReadsStaleData.class);
        assertFailed(results, "writeAndReadAligned", "writeAndReadUnaligned", "writesAroundBlockBoundariesMatchModel",
                "unalignedDirectBuffersMatchModel", "alignedPagesReadAndWriteBack", "fsyncBothModes",
                "punchHoleKeepsSizeAndReadsZeros", "zeroRangeReadsZeros",
                "manyOverlappingRequestsInFlight", "completionsThatSubmitAgainUnderFullCapacityNeverHang");
        assertPassed(results, "capabilitiesAndSize", "readAtAndPastEndOfFile", "readOnlyFileRefusesWritesWithEperm", "openFailuresNameTheFile");
    }

    @Test
    void failsABackendThatDeclaresTrimAndZeroButDoesNeither()
    {
        Map<String, List<TestExecutionResult>> results = run(IgnoresFallocate.class);
        assertFailed(results, "punchHoleKeepsSizeAndReadsZeros", "zeroRangeReadsZeros", "completionsThatSubmitAgainUnderFullCapacityNeverHang");
        assertPassed(results, "writeAndReadAligned", "writeAndReadUnaligned", "extentsOfSparseFile", "manyOverlappingRequestsInFlight");
    }

    private static Map<String, List<TestExecutionResult>> run(Class<? extends AbstractBackingFileTest> suite)
    {
        LauncherDiscoveryRequest request = LauncherDiscoveryRequestBuilder.request()
                .selectors(selectClass(suite))
                // the broken suites are disabled, so that nothing but this test runs them
                .configurationParameter("junit.jupiter.conditions.deactivate", "org.junit.*DisabledCondition")
                .build();
        Map<String, List<TestExecutionResult>> results = new ConcurrentHashMap<>();
        LauncherFactory.create().execute(request, new TestExecutionListener()
        {
            @Override
            public void executionFinished(TestIdentifier test, TestExecutionResult result)
            {
                if (test.isTest()) {
                    String method = test.getSource()
                            .filter(MethodSource.class::isInstance)
                            .map(source -> ((MethodSource) source).getMethodName())
                            .orElse(test.getDisplayName());
                    results.computeIfAbsent(method, name -> new CopyOnWriteArrayList<>()).add(result);
                }
            }
        });
        assertFalse(results.isEmpty(), "no test of " + suite.getSimpleName() + " ran");
        return results;
    }

    /** Every run of each test failed an assertion that says what was expected. */
    private static void assertFailed(Map<String, List<TestExecutionResult>> results, String... tests)
    {
        for (String test : tests) {
            List<TestExecutionResult> runs = results.getOrDefault(test, List.of());
            assertFalse(runs.isEmpty(), test + " did not run: " + results.keySet());
            for (TestExecutionResult run : runs) {
                assertEquals(TestExecutionResult.Status.FAILED, run.getStatus(), test + " let a broken backend through: " + run);
                Throwable failure = run.getThrowable().orElseThrow();
                assertTrue(failure instanceof AssertionError, test + " failed with " + failure + ", not with an assertion");
                assertTrue(failure.getMessage() != null && !failure.getMessage().isBlank(), test + " failed without saying what it expected: " + failure);
            }
        }
    }

    /** Every run of each test passed: the suite does not fail a backend for what it did not break. */
    private static void assertPassed(Map<String, List<TestExecutionResult>> results, String... tests)
    {
        for (String test : tests) {
            List<TestExecutionResult> runs = results.getOrDefault(test, List.of());
            assertFalse(runs.isEmpty(), test + " did not run: " + results.keySet());
            for (TestExecutionResult run : runs) {
                assertEquals(TestExecutionResult.Status.SUCCESSFUL, run.getStatus(), test + " failed a backend for what it did not break: " + run);
            }
        }
    }

    /** The memory backend, with a test double around each file it opens. */
    private abstract static class BrokenSuite
            extends AbstractBackingFileTest
    {
        abstract BackingFile breakFile(BackendConfig config)
                throws IOException;

        @Override
        protected BackendFactory factory()
        {
            return new BackendFactory()
            {
                @Override
                public String name()
                {
                    return "broken";
                }

                @Override
                public String description()
                {
                    return "the memory backend, broken (tests)";
                }

                @Override
                public BackingFile open(BackendConfig config)
                        throws IOException
                {
                    return breakFile(config);
                }
            };
        }

        @Override
        protected boolean holesFromFileSystem()
        {
            return false;
        }
    }

    /** Claims every other write (the first, the third, ...) and writes nothing. */
    @Disabled("broken on purpose: run by TestSuiteFailsBrokenBackends, which expects it to fail")
    static class DropsWrites
            extends BrokenSuite
    {
        @Override
        BackingFile breakFile(BackendConfig config)
                throws IOException
        {
            AtomicLong writes = new AtomicLong();
            return new ForwardingBackingFile(new MemoryBackendFactory().open(config))
            {
                @Override
                public long writeIter(Kiocb kiocb)
                {
                    if (writes.getAndIncrement() % 2 == 0 && !capabilities().readOnly()) {
                        long count = kiocb.iter().count();
                        kiocb.iter().advance(count);
                        return count;
                    }
                    return super.writeIter(kiocb);
                }
            };
        }
    }

    /** Reads the file as it was at open: later writes, punches and zeroing never show. */
    @Disabled("broken on purpose: run by TestSuiteFailsBrokenBackends, which expects it to fail")
    static class ReadsStaleData
            extends BrokenSuite
    {
        @Override
        BackingFile breakFile(BackendConfig config)
                throws IOException
        {
            BackingFile snapshot = new MemoryBackendFactory().open(config.withReadOnly(true));
            return new ForwardingBackingFile(new MemoryBackendFactory().open(config))
            {
                @Override
                public long readIter(Kiocb kiocb)
                {
                    return snapshot.readIter(kiocb);
                }

                @Override
                public void close()
                        throws IOException
                {
                    snapshot.close();
                    super.close();
                }
            };
        }
    }

    /** Declares trim and zero, answers 0 to every fallocate, and does nothing. */
    @Disabled("broken on purpose: run by TestSuiteFailsBrokenBackends, which expects it to fail")
    static class IgnoresFallocate
            extends BrokenSuite
    {
        @Override
        BackingFile breakFile(BackendConfig config)
                throws IOException
        {
            return new ForwardingBackingFile(new MemoryBackendFactory().open(config))
            {
                @Override
                public long fallocate(Kiocb kiocb)
                {
                    return capabilities().readOnly() ? super.fallocate(kiocb) : 0;
                }
            };
        }
    }
}
