package dev.jloop.backend.rbd;

import dev.jloop.api.PluginOptions;
import jnr.ffi.byref.PointerByReference;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static java.util.Objects.requireNonNull;

/**
 * A connection to a Ceph cluster and an I/O context on one pool: {@code rados_create2},
 * {@code rados_conf_read_file}, {@code rados_conf_set}, {@code rados_connect},
 * {@code rados_ioctx_create}. Closed in the reverse order.
 */
final class Rados
        implements Closeable
{
    /** librados waits 300 s for an unreachable cluster by default; a server that is being started should say so sooner. */
    private static final String DEFAULT_MOUNT_TIMEOUT = "30";

    private final LibRbd lib;
    private final long cluster;
    private final long ioctx;

    private Rados(LibRbd lib, long cluster, long ioctx)
    {
        this.lib = lib;
        this.cluster = cluster;
        this.ioctx = ioctx;
    }

    long ioctx()
    {
        return ioctx;
    }

    /**
     * Connects as the options say ({@link RbdBackendFactory#options()}) and opens {@code name}'s pool
     * and namespace; {@code direct} turns librbd's cache off.
     *
     * @throws IOException naming the call that failed and why
     */
    static Rados connect(LibRbd lib, PluginOptions options, ImageName name, boolean direct)
            throws IOException
    {
        requireNonNull(lib, "lib is null");
        String id = options.string(RbdBackendFactory.ID);
        String client = options.string(RbdBackendFactory.NAME);
        if (id != null && client != null) {
            throw new IOException("--" + RbdBackendFactory.ID + " and --" + RbdBackendFactory.NAME + " both name the client; give one");
        }
        String clientName = client != null ? client : "client." + (id != null ? id : "admin");
        PointerByReference handle = new PointerByReference();
        check("rados_create2(" + clientName + ")", lib.rados_create2(handle, options.string(RbdBackendFactory.CLUSTER), clientName, 0));
        long cluster = value(handle);
        try {
            Path conf = options.path(RbdBackendFactory.CONF);
            // NULL: the usual search ($CEPH_CONF, /etc/ceph/$cluster.conf, ~/.ceph/$cluster.conf, ./$cluster.conf)
            int res = lib.rados_conf_read_file(cluster, conf == null ? null : conf.toString());
            if (res < 0 && conf != null) {
                check("rados_conf_read_file(" + conf + ")", res);
            }
            Map<String, String> settings = new LinkedHashMap<>();
            settings.put("client_mount_timeout", DEFAULT_MOUNT_TIMEOUT);
            settings.put("rados_mon_op_timeout", DEFAULT_MOUNT_TIMEOUT);
            // discard exactly what is asked, down to 4 KiB, and zero partial objects: see RbdBackingFile#fallocate
            settings.put("rbd_skip_partial_discard", "false");
            settings.put("rbd_discard_granularity_bytes", String.valueOf(RbdBackingFile.DISCARD_GRANULARITY));
            if (direct) {
                // --direct bypasses the host's cache; for an image that is librbd's, as qemu's cache=none turns it off
                settings.put("rbd_cache", "false");
            }
            String keyring = options.string(RbdBackendFactory.KEYRING);
            if (keyring != null) {
                settings.put("keyring", Path.of(keyring).toAbsolutePath().toString());
            }
            settings.putAll(parseSettings(options.string(RbdBackendFactory.SET)));
            for (Map.Entry<String, String> setting : settings.entrySet()) {
                check("rados_conf_set(" + setting.getKey() + "=" + setting.getValue() + ")", lib.rados_conf_set(cluster, setting.getKey(), setting.getValue()));
            }
            check("rados_connect (as " + clientName + (conf == null ? "" : ", " + conf) + ")", lib.rados_connect(cluster));
            PointerByReference ioctx = new PointerByReference();
            check("rados_ioctx_create(" + name.pool() + ")", lib.rados_ioctx_create(cluster, name.pool(), ioctx));
            long context = value(ioctx);
            if (!name.namespace().isEmpty()) {
                lib.rados_ioctx_set_namespace(context, name.namespace());
            }
            return new Rados(lib, cluster, context);
        }
        catch (IOException | RuntimeException e) {
            lib.rados_shutdown(cluster);
            throw e;
        }
    }

    /** {@code key=value;key=value}, as {@code --ceph-set} takes them. */
    static Map<String, String> parseSettings(String text)
    {
        Map<String, String> settings = new LinkedHashMap<>();
        if (text == null) {
            return settings;
        }
        for (String setting : text.split(";")) {
            if (setting.isBlank()) {
                continue;
            }
            int equals = setting.indexOf('=');
            if (equals <= 0) {
                throw new IllegalArgumentException("--" + RbdBackendFactory.SET + ": expected KEY=VALUE[;KEY=VALUE...], not '" + setting + "'");
            }
            settings.put(setting.substring(0, equals).trim(), setting.substring(equals + 1).trim());
        }
        return settings;
    }

    /** What an out parameter received: a handle, or a {@code uint64_t} (jnr reads a zero as no pointer). */
    static long value(PointerByReference out)
    {
        jnr.ffi.Pointer pointer = out.getValue();
        return pointer == null ? 0 : pointer.address();
    }

    static void check(String call, long res)
            throws IOException
    {
        if (res < 0) {
            throw new IOException(call + " failed: " + describe(res));
        }
    }

    /** The name and text of a negative errno, e.g. {@code "No such file or directory (ENOENT)"}. */
    static String describe(long res)
    {
        jnr.constants.platform.Errno errno = jnr.constants.platform.Errno.valueOf(Math.abs(res));
        return errno.defined() ? errno.description() + " (" + errno.name() + ")" : "errno " + Math.abs(res);
    }

    @Override
    public void close()
    {
        lib.rados_ioctx_destroy(ioctx);
        lib.rados_shutdown(cluster);
    }
}
