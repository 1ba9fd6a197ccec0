package dev.jloop.backend.sync;

import dev.jloop.testkit.AbstractFileBackendTest;
import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.IovIter.Direction;
import dev.jloop.api.Kiocb;
import dev.jloop.api.ThreadModel;
import dev.jloop.iter.IovecIter;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ServiceLoader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestSyncBackend
        extends AbstractFileBackendTest
{
    @Override
    protected BackendFactory factory()
    {
        return new SyncBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return false;
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
        try (BackingFile file = factory().open(BackendConfig.of(file(BLOCK, 20)))) {
            assertEquals(ThreadModel.SERIALIZE_ALL_REQUESTS, file.capabilities().threadModel());
            Kiocb kiocb = new Kiocb(null);
            IovecIter iter = IovecIter.of(Direction.DEST, new byte[100]);
            kiocb.initRw(Kiocb.Op.READ, file, iter, 10, 0);
            assertEquals(100, file.readIter(kiocb));
            assertEquals(0, iter.count());
        }
    }
}
