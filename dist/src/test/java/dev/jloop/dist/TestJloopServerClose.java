package dev.jloop.dist;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.Errno;
import dev.jloop.api.Export;
import dev.jloop.api.Frontend;
import dev.jloop.api.FrontendConfig;
import dev.jloop.api.FrontendFactory;
import dev.jloop.api.Kiocb;
import dev.jloop.api.StillServingException;
import dev.jloop.api.ForwardingBackingFile;
import dev.jloop.testkit.MemoryBackingFile;
import dev.jloop.testkit.TargetTempDirFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Closing in reverse order, also when starting fails, and what happens when the frontend cannot stop. */
class TestJloopServerClose
{
    @TempDir(factory = TargetTempDirFactory.class)
    Path dir;

    /**
     * A ublk STOP_DEV the kernel does not answer leaves the queues serving: the device they write to
     * must stay open (flushed, not closed under them), and the close fails so that jloop says so.
     */
    @Test
    void aFrontendThatStillServesKeepsItsDevicesOpenAndFlushed()
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        AtomicInteger fsyncs = new AtomicInteger();
        JloopServer server = server(memory, fsyncs, true);
        server.start();
        IOException e = assertThrows(IOException.class, server::close);
        assertTrue(e.getMessage().contains("STOP_DEV got no answer") && e.getMessage().contains("stay open"), e.getMessage());
        assertFalse(memory.isClosed(), "the device was closed under a frontend that still serves it");
        assertEquals(1, fsyncs.get(), "what was acknowledged is flushed");
    }

    @Test
    void aFrontendThatStopsLetsTheDevicesCloseWithAFlush()
            throws IOException
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        AtomicInteger fsyncs = new AtomicInteger();
        JloopServer server = server(memory, fsyncs, false);
        server.start();
        server.close();
        assertTrue(memory.isClosed());
        assertEquals(1, fsyncs.get(), "the flush on close");
    }

    /** A file whose size is an error cannot be served: jloop says why, and closes the file it opened. */
    @Test
    void aFileThatReportsNoSizeIsRefusedAndClosed()
    {
        MemoryBackingFile memory = new MemoryBackingFile(1 << 20);
        BackingFile sizeless = new ForwardingBackingFile(memory)
        {
            @Override
            public long size()
            {
                return -Errno.EIO;
            }
        };
        JloopServer server = server(sizeless, false);
        UserException e = assertThrows(UserException.class, server::start);
        assertTrue(e.getMessage().contains("reports no size: EIO"), e.getMessage());
        assertTrue(memory.isClosed(), "the file opened for the export is closed again");
    }

    private JloopServer server(MemoryBackingFile memory, AtomicInteger fsyncs, boolean stuck)
    {
        return server(new CountingFsyncs(memory, fsyncs), stuck);
    }

    private JloopServer server(BackingFile file, boolean stuck)
    {
        BackendFactory backend = new BackendFactory()
        {
            @Override
            public String name()
            {
                return "memory";
            }

            @Override
            public String description()
            {
                return "a memory file";
            }

            @Override
            public BackingFile open(BackendConfig config)
            {
                return file;
            }
        };
        FrontendFactory frontend = new FrontendFactory()
        {
            @Override
            public String name()
            {
                return "fake";
            }

            @Override
            public String description()
            {
                return "a frontend that may fail to stop";
            }

            @Override
            public Frontend create(FrontendConfig config, List<Export> exports)
            {
                return new Frontend()
                {
                    @Override
                    public String uri()
                    {
                        return "fake:";
                    }

                    @Override
                    public void close()
                    {
                        if (stuck) {
                            throw new StillServingException("ublk STOP_DEV got no answer from the kernel within 30000 ms", null);
                        }
                    }
                };
            }
        };
        return TestServeModule.server(List.of(backend), List.of(frontend), "--backend", "memory", "--frontend", "fake", "--size", "1M", dir.resolve("disk.img").toString());
    }

    /** The memory file, counting fsyncs. */
    private static final class CountingFsyncs
            extends ForwardingBackingFile
    {
        private final AtomicInteger fsyncs;

        CountingFsyncs(BackingFile delegate, AtomicInteger fsyncs)
        {
            super(delegate);
            this.fsyncs = fsyncs;
        }

        @Override
        public long fsync(Kiocb kiocb)
        {
            fsyncs.incrementAndGet();
            return super.fsync(kiocb);
        }

        @Override
        public Capabilities capabilities()
        {
            return super.capabilities().toBuilder().flush(true).build();
        }
    }
}
