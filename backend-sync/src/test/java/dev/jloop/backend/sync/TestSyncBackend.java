package dev.jloop.backend.sync;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Capabilities;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.IovecIter;
import dev.jloop.testkit.AbstractBackingFileTest;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Random;
import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The conformance suite on the sync backend, through the page cache; and what only it does. */
public class TestSyncBackend
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new SyncBackendFactory();
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        return Capabilities.builder()
                .flush(true).trim(true).zero(true).extents(true).multiConn(true).cache(true)
                .threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS)
                .build();
    }

    @Override
    protected boolean plainFile()
    {
        return true;
    }

    @Test
    public void testFoundByServiceLoader()
    {
        assertTrue(ServiceLoader.load(BackendFactory.class).stream().anyMatch(p -> p.get().name().equals("sync")));
    }

    @Test
    public void testCompletesInTheCallingThread()
            throws IOException
    {
        try (BackingFile file = factory().open(BackendConfig.of(createFile("calling-thread", randomBytes(new Random(20), BLOCK))))) {
            assertEquals(ThreadModel.SERIALIZE_ALL_REQUESTS, file.capabilities().threadModel());
            Kiocb kiocb = new Kiocb(null);
            IovecIter iter = IovecIter.of(Direction.DEST, new byte[100]);
            kiocb.initRw(Kiocb.Op.READ, file, iter, 10, 0);
            assertEquals(100, file.readIter(kiocb));
            assertEquals(0, iter.count());
        }
    }
}
