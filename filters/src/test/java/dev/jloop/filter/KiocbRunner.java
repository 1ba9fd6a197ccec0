package dev.jloop.filter;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.KvecIter;

import java.nio.ByteBuffer;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Operations on a file through an {@link AioKernel}, as the loop device submits them, waiting for each; short transfers are continued. */
final class KiocbRunner
{
    private final AioKernel aio = new AioKernel();

    /** Writes all of {@code data} at {@code pos}; returns the first error, or the bytes written. */
    long write(BackingFile file, long pos, byte[] data)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(Math.max(1, data.length)).put(data).flip();
        IovIter iter = KvecIter.of(IovIter.Direction.SOURCE, buffer);
        long done = 0;
        while (iter.count() > 0) {
            long at = pos + done;
            long res = run(aio.alloc().initRw(Kiocb.Op.WRITE, file, iter, at, 0));
            if (res <= 0) {
                return res;
            }
            done += res;
        }
        return done;
    }

    /** Reads {@code length} bytes at {@code pos}, failing on an error or a short file. */
    byte[] read(BackingFile file, long pos, int length)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(Math.max(1, length)).limit(length);
        IovIter iter = KvecIter.of(IovIter.Direction.DEST, buffer);
        long done = 0;
        while (iter.count() > 0) {
            long at = pos + done;
            long res = run(aio.alloc().initRw(Kiocb.Op.READ, file, iter, at, 0));
            if (res <= 0) {
                throw new AssertionError("read of " + iter.count() + " bytes at " + at + ": " + res);
            }
            assertEquals(length - done - res, iter.count(), "the iterator advanced by the result");
            done += res;
        }
        byte[] bytes = new byte[length];
        buffer.clear().get(bytes, 0, length);
        return bytes;
    }

    long fsync(BackingFile file)
            throws Exception
    {
        return run(aio.alloc().initFsync(file, true));
    }

    long fallocate(BackingFile file, int mode, long offset, long length)
            throws Exception
    {
        return run(aio.alloc().initFallocate(file, mode, offset, length));
    }

    Kiocb alloc()
    {
        return aio.alloc();
    }

    /** Submits a prepared kiocb and waits for its result. */
    long run(Kiocb kiocb)
            throws Exception
    {
        return submit(kiocb).get(60, TimeUnit.SECONDS);
    }

    CompletableFuture<Long> submit(Kiocb kiocb)
    {
        CompletableFuture<Long> result = new CompletableFuture<>();
        kiocb.initCallback((k, res) -> {
            aio.free(k);
            result.complete(res);
        }, null);
        aio.submit(kiocb);
        return result;
    }

    int inFlight()
    {
        return aio.inFlight();
    }
}
