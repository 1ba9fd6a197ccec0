package dev.jloop.backend.rbd;

import dev.jloop.api.BackendConfig;
import dev.jloop.api.BackendFactory;
import dev.jloop.api.BackingFile;
import dev.jloop.api.Errno;
import dev.jloop.api.PluginOption;
import dev.jloop.api.PluginOptions;
import jnr.ffi.byref.PointerByReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.List;

import static java.util.Objects.requireNonNull;

/**
 * The {@code rbd} backend: a Ceph RBD image, named {@code POOL/IMAGE[@SNAP]} where other backends
 * take a file ({@link RbdBackingFile}). The options are those qemu's {@code rbd:} driver and
 * {@code rbd-nbd} take: the ceph.conf, the client's id or name, the keyring, the cluster name and any
 * {@code rados_conf_set} setting. Snapshots are served read-only. {@code --direct} turns librbd's
 * cache off (as qemu's {@code cache=none}). {@code --size} creates a missing
 * image and grows a smaller one, never shrinks one.
 *
 * <p>Cheap until an image is opened: listing the backend looks for librbd's files only, and librbd is
 * loaded by the first {@link #open} or {@link #create}. Kept out of {@code --backend auto}: an image
 * name is not a file.
 */
public final class RbdBackendFactory
        implements BackendFactory
{
    public static final String BACKEND = "rbd";
    static final String CONF = "ceph-conf";
    static final String ID = "ceph-id";
    static final String NAME = "ceph-name";
    static final String KEYRING = "ceph-keyring";
    static final String CLUSTER = "ceph-cluster";
    static final String SET = "ceph-set";

    private static final Logger log = LoggerFactory.getLogger(RbdBackendFactory.class);

    @Override
    public String name()
    {
        return BACKEND;
    }

    @Override
    public String description()
    {
        return "a Ceph RBD image, POOL/IMAGE[@SNAP], through librbd's asynchronous API";
    }

    @Override
    public String unavailabilityCause()
    {
        return LibRbd.probe();
    }

    /** Only by name: its targets are images, not files. */
    @Override
    public int autoPriority()
    {
        return -1;
    }

    /** Its targets are {@code POOL/IMAGE[@SNAP]}, which only librbd can tell exist. */
    @Override
    public boolean targetsAreFiles()
    {
        return false;
    }

    @Override
    public List<PluginOption> options()
    {
        return List.of(
                PluginOption.of(CONF, PluginOption.Type.PATH, null,
                        "the Ceph configuration file (default: $CEPH_CONF, then /etc/ceph/ceph.conf, as librados searches)", "--ceph-conf /etc/ceph/ceph.conf"),
                PluginOption.of(ID, PluginOption.Type.STRING, null,
                        "the client id, as rbd --id and qemu's id= (default admin: client.admin)", "--ceph-id libvirt"),
                PluginOption.of(NAME, PluginOption.Type.STRING, null,
                        "the full client name, as rbd --name (instead of --ceph-id)", "--ceph-name client.jloop"),
                PluginOption.of(KEYRING, PluginOption.Type.PATH, null,
                        "the keyring holding the client's key (default: what ceph.conf says)", "--ceph-keyring /etc/ceph/ceph.client.jloop.keyring"),
                PluginOption.of(CLUSTER, PluginOption.Type.STRING, "ceph",
                        "the cluster name, which names the default configuration file", "--ceph-cluster backup"),
                PluginOption.of(SET, PluginOption.Type.STRING, null,
                        "more librados/librbd settings, KEY=VALUE separated by ';' (rados_conf_set), as qemu's :key=value",
                        "--ceph-set 'mon_host=10.0.0.1;rbd_cache=false'"));
    }

    @Override
    public void create(BackendConfig config, long size)
            throws IOException
    {
        requireNonNull(config, "config is null");
        PluginOptions options = parse(config);
        ImageName name = imageName(config);
        if (name.snapshot() != null) {
            throw new IOException(name + ": a snapshot cannot be created or resized (drop --size)");
        }
        LibRbd lib = load();
        try (Rados rados = Rados.connect(lib, options, name, false)) {
            PointerByReference handle = new PointerByReference();
            int res = lib.rbd_open(rados.ioctx(), name.image(), handle, null);
            if (res == -Errno.ENOENT) {
                // the pool's and ceph.conf's defaults choose the object size and features, as `rbd create` does
                Rados.check("rbd_create(" + name + ", " + size + ")", lib.rbd_create(rados.ioctx(), name.image(), size, new PointerByReference()));
                log.info("created RBD image {} of {} bytes", name, size);
                return;
            }
            Rados.check("rbd_open(" + name + ")", res);
            long image = Rados.value(handle);
            try {
                PointerByReference current = new PointerByReference();
                Rados.check("rbd_get_size(" + name + ")", lib.rbd_get_size(image, current));
                long bytes = Rados.value(current);
                if (bytes > size) {
                    log.warn("RBD image {} is already {} bytes, larger than --size {}; serving it whole, it is never shrunk", name, bytes, size);
                }
                else if (bytes < size) {
                    Rados.check("rbd_resize(" + name + ", " + size + ")", lib.rbd_resize(image, size));
                    log.info("grew RBD image {} from {} to {} bytes", name, bytes, size);
                }
            }
            finally {
                lib.rbd_close(image);
            }
        }
    }

    @Override
    public BackingFile open(BackendConfig config)
            throws IOException
    {
        requireNonNull(config, "config is null");
        PluginOptions options = parse(config);
        ImageName name = imageName(config);
        LibRbd lib = load();
        Rados rados = Rados.connect(lib, options, name, config.direct());
        try {
            return RbdBackingFile.open(lib, rados, name, config.readOnly(), config.queueDepth());
        }
        catch (IOException | RuntimeException e) {
            rados.close();
            throw e;
        }
    }

    private PluginOptions parse(BackendConfig config)
    {
        return PluginOptions.parse("the " + BACKEND + " backend", options(), config.options());
    }

    private static ImageName imageName(BackendConfig config)
            throws IOException
    {
        try {
            return ImageName.parse(config.path().toString());
        }
        catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    private static LibRbd load()
            throws IOException
    {
        try {
            return LibRbd.get();
        }
        catch (UnsatisfiedLinkError e) {
            throw new IOException("the " + BACKEND + " backend is unavailable: " + e.getMessage(), e);
        }
    }
}
