package dev.jloop.backend.sync;

import dev.jloop.testkit.AbstractFileBackendTest;
import dev.jloop.api.BackendFactory;
import org.junit.jupiter.api.Test;

import java.nio.file.FileSystemException;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestSyncDirectBackend
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
