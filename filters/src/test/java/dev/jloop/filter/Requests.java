package dev.jloop.filter;

import dev.jloop.aio.AioKernel;
import dev.jloop.api.BackingFile;
import dev.jloop.api.IovIter;
import dev.jloop.api.Kiocb;
import dev.jloop.iter.KvecIter;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Requests to a file through an {@link AioKernel}, as the loop device submits them, waited for: how the filter tests drive a filter. */
final class Requests
{
    final AioKernel aio = new AioKernel();

    long write(BackingFile file, long pos, byte[] data, int flags)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(data.length).put(data).flip();
        return run(aio.alloc().initRw(Kiocb.Op.WRITE, file, KvecIter.of(IovIter.Direction.SOURCE, buffer), pos, flags));
    }

    long write(BackingFile file, long pos, int length, byte value)
            throws Exception
    {
        byte[] data = new byte[length];
        Arrays.fill(data, value);
        return write(file, pos, data, 0);
    }

    /** One read of {@code dst.length} bytes at {@code pos}; returns its result. */
    long read(BackingFile file, long pos, byte[] dst)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(dst.length);
        long res = run(aio.alloc().initRw(Kiocb.Op.READ, file, KvecIter.of(IovIter.Direction.DEST, buffer), pos, 0));
        buffer.clear().get(dst);
        return res;
    }

    /** Reads {@code length} bytes at {@code pos}, resubmitting the rest of short reads as the loop device does. */
    byte[] readFully(BackingFile file, long pos, int length)
            throws Exception
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(length);
        IovIter iter = KvecIter.of(IovIter.Direction.DEST, buffer);
        long done = 0;
        while (iter.count() > 0) {
            long res = run(aio.alloc().initRw(Kiocb.Op.READ, file, iter, pos + done, 0));
            if (res <= 0) {
                throw new AssertionError("read of " + iter.count() + " bytes at " + (pos + done) + ": " + res);
            }
            done += res;
        }
        byte[] bytes = new byte[length];
        buffer.clear().get(bytes);
        return bytes;
    }

    long flush(BackingFile file, boolean datasync)
            throws Exception
    {
        return run(aio.alloc().initFsync(file, datasync));
    }

    long fallocate(BackingFile file, int mode, long offset, long length)
            throws Exception
    {
        return run(aio.alloc().initFallocate(file, mode, offset, length));
    }

    /** A write left in flight, for many at once; its result as the filter gave it. */
    CompletableFuture<Long> startWrite(BackingFile file, long pos, byte[] data)
    {
        ByteBuffer buffer = ByteBuffer.allocateDirect(data.length).put(data).flip();
        return submit(aio.alloc().initRw(Kiocb.Op.WRITE, file, KvecIter.of(IovIter.Direction.SOURCE, buffer), pos, 0));
    }

    long run(Kiocb kiocb)
            throws Exception
    {
        return await(submit(kiocb));
    }

    static long await(CompletableFuture<Long> result)
            throws Exception
    {
        return result.get(30, TimeUnit.SECONDS);
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

    void assertIdle()
    {
        assertEquals(0, aio.inFlight(), "kiocbs in flight");
        assertEquals(0, aio.allocated(), "kiocbs not freed");
    }
}
