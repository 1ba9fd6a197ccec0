package dev.jloop.backend.rbd;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.annotations.Delegate;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.byref.PointerByReference;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The librados and librbd calls of the rbd backend ({@code rados/librados.h}, {@code rbd/librbd.h}),
 * through jnr-ffi. Every call returns {@code -errno} itself, so errno need not be saved
 * ({@code @IgnoreError}). Handles ({@code rados_t}, {@code rados_ioctx_t}, {@code rbd_image_t},
 * {@code rbd_completion_t}) are native addresses passed as {@code long}, which costs no
 * {@link Pointer} per request.
 *
 * <p>No binding may have exactly six primitive parameters: jnr-ffi 2.2.17 with jffi 1.3.13 passes
 * garbage in the sixth (see {@code dev.jloop.posix.LibC}). {@code rbd_aio_write_zeroes} has six, so
 * its image is a {@link Pointer}.
 *
 * <p>Loaded on first use ({@link #get()}), not when the backend is listed: a machine without Ceph
 * pays nothing, and one with it pays only when an image is opened.
 */
public interface LibRbd
{
    /** {@code RBD_WRITE_ZEROES_FLAG_THICK_PROVISION}: zeroes are written, the extent stays allocated. */
    int WRITE_ZEROES_FLAG_THICK_PROVISION = 1;

    /** {@code rbd_callback_t}: {@code void (*)(rbd_completion_t cb, void *arg)}, run on a librbd thread. */
    interface AioCallback
    {
        @Delegate
        void call(long completion, long arg);
    }

    /** The callback of {@code rbd_diff_iterate2}: {@code int (*)(uint64_t off, size_t len, int exists, void *arg)}. */
    interface DiffCallback
    {
        @Delegate
        int call(long offset, long length, int exists, long arg);
    }

    @IgnoreError
    int rados_create2(PointerByReference cluster, String clusterName, String name, long flags);

    @IgnoreError
    int rados_conf_read_file(long cluster, String path);

    @IgnoreError
    int rados_conf_set(long cluster, String option, String value);

    @IgnoreError
    int rados_connect(long cluster);

    @IgnoreError
    void rados_shutdown(long cluster);

    @IgnoreError
    int rados_ioctx_create(long cluster, String pool, PointerByReference ioctx);

    @IgnoreError
    void rados_ioctx_destroy(long ioctx);

    @IgnoreError
    void rados_ioctx_set_namespace(long ioctx, String namespace);

    @IgnoreError
    int rbd_create(long ioctx, String name, long size, PointerByReference order);

    @IgnoreError
    int rbd_open(long ioctx, String name, PointerByReference image, String snapName);

    @IgnoreError
    int rbd_open_read_only(long ioctx, String name, PointerByReference image, String snapName);

    @IgnoreError
    int rbd_close(long image);

    @IgnoreError
    int rbd_get_size(long image, PointerByReference size);

    @IgnoreError
    int rbd_resize(long image, long size);

    @IgnoreError
    int rbd_flush(long image);

    /** {@code completion} is the address of a {@code rbd_completion_t} that receives the new completion. */
    @IgnoreError
    int rbd_aio_create_completion(long arg, long callback, long completion);

    @IgnoreError
    long rbd_aio_get_return_value(long completion);

    @IgnoreError
    void rbd_aio_release(long completion);

    @IgnoreError
    int rbd_aio_readv(long image, long iov, int iovcnt, long offset, long completion);

    @IgnoreError
    int rbd_aio_writev(long image, long iov, int iovcnt, long offset, long completion);

    @IgnoreError
    int rbd_aio_flush(long image, long completion);

    @IgnoreError
    int rbd_aio_discard(long image, long offset, long length, long completion);

    @IgnoreError
    int rbd_aio_write_zeroes(Pointer image, long offset, long length, long completion, int zeroFlags, int opFlags);

    @IgnoreError
    int rbd_diff_iterate2(long image, String fromSnapName, long offset, long length, byte includeParent, byte wholeObject,
            DiffCallback callback, long arg);

    /** The library, loaded on the first call; throws {@link UnsatisfiedLinkError} saying why it cannot be. */
    static LibRbd get()
    {
        return Holder.load();
    }

    /**
     * Why librbd cannot be loaded here, without loading it: {@code null} when {@code librbd.so.1} and
     * {@code librados.so.2} are found in the usual library directories (a cheap probe for
     * {@code jloop backends}; loading them starts nothing but still maps a large library).
     */
    static String probe()
    {
        List<String> directories = new ArrayList<>(List.of("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"));
        String extra = System.getenv("LD_LIBRARY_PATH");
        if (extra != null) {
            for (String directory : extra.split(":")) {
                if (!directory.isEmpty()) {
                    directories.add(0, directory);
                }
            }
        }
        for (String library : List.of(Holder.LIBRBD, Holder.LIBRADOS)) {
            if (directories.stream().noneMatch(directory -> Files.exists(Path.of(directory, library)))) {
                return library + " not found (install librbd1, e.g. apt-get install librbd1)";
            }
        }
        return null;
    }

    final class Holder
    {
        static final String LIBRBD = "librbd.so.1";
        static final String LIBRADOS = "librados.so.2";

        private static LibRbd instance;
        private static Throwable failure;

        private Holder() {}

        private static synchronized LibRbd load()
        {
            if (instance == null && failure == null) {
                try {
                    instance = LibraryLoader.create(LibRbd.class).failImmediately().library(LIBRADOS).load(LIBRBD);
                }
                catch (LinkageError | RuntimeException e) {
                    failure = e;
                }
            }
            if (instance == null) {
                UnsatisfiedLinkError error = new UnsatisfiedLinkError("cannot load " + LIBRBD + " (install librbd1): " + failure.getMessage());
                error.initCause(failure);
                throw error;
            }
            return instance;
        }
    }
}
