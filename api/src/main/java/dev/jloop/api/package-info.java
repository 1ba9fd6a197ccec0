/**
 * The jloop SPI: what a backend or frontend plugin implements and calls. {@code jloop-api} depends
 * on nothing but the JDK, so a plugin compiles against this one jar and is found at run time through
 * {@link java.util.ServiceLoader} ({@link dev.jloop.api.BackendFactory},
 * {@link dev.jloop.api.FrontendFactory}).
 *
 * <h2>What a plugin may rely on</h2>
 * The types of this package and the contracts written in their javadoc, which are the whole
 * agreement: who owns a {@link dev.jloop.api.Kiocb} or {@link dev.jloop.api.Bio} and when, which
 * thread may call what, the completion rule and short transfers ({@link dev.jloop.api.BackingFile}),
 * results as {@code -errno} with Linux's numbers ({@link dev.jloop.api.Errno}). The conformance suite
 * in {@code jloop-testkit} ({@code AbstractBackingFileTest}) checks a backend against them; use it
 * at test scope, it is no part of the run-time SPI.
 *
 * <p>A plugin relies on nothing else: the other jloop modules ({@code jloop-posix}, {@code jloop-iter},
 * {@code jloop-aio-kernel}, {@code jloop-loop}, the built-in backends and frontends) are jloop's own
 * implementation and change without notice, and a plugin that uses them does so at its own risk. It
 * sees memory only through {@link dev.jloop.api.IovIter}, whatever class implements it. jloop is at
 * 0.x: this package may still change between versions, so a plugin is built against the
 * {@code jloop-api} of the jloop it runs in.
 *
 * <h2>What the loop device guarantees a backend</h2>
 * Every {@link dev.jloop.api.BackingFile} that jloop serves sits behind its loop device, which
 * <ul>
 * <li>reads {@link dev.jloop.api.BackingFile#size()} once, when it is created, and submits only
 *     ranges inside it, and no read or write of zero bytes;</li>
 * <li>keeps no more kiocbs in flight than {@link dev.jloop.api.Capabilities#queueDepth()} (when
 *     declared), and submits them one at a time, from one thread, to a
 *     {@link dev.jloop.api.ThreadModel#SERIALIZE_ALL_REQUESTS} file (which may still be asked for
 *     extents from another thread);</li>
 * <li>resubmits the rest of a short read or write itself, at {@code pos + res};</li>
 * <li>sets {@link dev.jloop.api.Kiocb#IOCB_DSYNC} only where native FUA is declared, asks for
 *     {@code fallocate} (punch hole or zero range, with keep-size) only where trim or zero is
 *     declared, for {@link dev.jloop.api.BackingFile#extents extents} and
 *     {@link dev.jloop.api.BackingFile#cache cache} only where they are declared, and for no write or
 *     fallocate on a file that declares itself read-only;</li>
 * <li>submits no follow-up work from a completion (the completion rule).</li>
 * </ul>
 */
package dev.jloop.api;
