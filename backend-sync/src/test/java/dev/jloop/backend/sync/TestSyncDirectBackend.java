package dev.jloop.backend.sync;

import dev.jloop.api.BackendFactory;
import dev.jloop.api.Capabilities;
import dev.jloop.api.ThreadModel;
import dev.jloop.testkit.AbstractBackingFileTest;
import org.junit.jupiter.api.Test;

import java.nio.file.FileSystemException;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The conformance suite on the sync backend with O_DIRECT; and what only it does. */
public class TestSyncDirectBackend
        extends AbstractBackingFileTest
{
    @Override
    protected BackendFactory factory()
    {
        return new SyncBackendFactory();
    }

    @Override
    protected boolean direct()
    {
        return true;
    }

    @Override
    protected Capabilities expectedCapabilities()
    {
        // no read-ahead: O_DIRECT does not use the page cache
        return Capabilities.builder()
                .flush(true).trim(true).zero(true).extents(true).multiConn(true)
                .threadModel(ThreadModel.SERIALIZE_ALL_REQUESTS)
                .logicalBlockSize(BLOCK)
                .build();
    }

    @Override
    protected boolean plainFile()
    {
        return true;
    }

    @Test
    public void testFileSystemRefusingDirectIsNamed()
    {
        // procfs refuses O_DIRECT with EINVAL
        FileSystemException e = assertThrows(FileSystemException.class, () -> open(Path.of("/proc/version"), true));
        assertTrue(e.getMessage().contains("does not support O_DIRECT"), e.getMessage());
    }
}
