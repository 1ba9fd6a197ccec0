package dev.jloop.backend.rbd;

import static java.util.Objects.requireNonNull;

/**
 * An RBD image as users name it to {@code rbd}, {@code rbd-nbd} and qemu: {@code POOL/IMAGE},
 * {@code POOL/NAMESPACE/IMAGE}, each with an optional {@code @SNAP}, and qemu's {@code rbd:} in front
 * if one likes.
 *
 * @param namespace empty for the pool's default namespace
 * @param snapshot {@code null} for the image itself
 */
record ImageName(String pool, String namespace, String image, String snapshot)
{
    static final String SYNTAX = "POOL/IMAGE[@SNAP] (or POOL/NAMESPACE/IMAGE[@SNAP])";

    ImageName
    {
        requireNonNull(pool, "pool is null");
        requireNonNull(namespace, "namespace is null");
        requireNonNull(image, "image is null");
    }

    /** @throws IllegalArgumentException saying what {@code text} lacks */
    static ImageName parse(String text)
    {
        String name = text.startsWith("rbd:") ? text.substring("rbd:".length()) : text;
        String snapshot = null;
        int at = name.indexOf('@');
        if (at >= 0) {
            snapshot = name.substring(at + 1);
            name = name.substring(0, at);
            if (snapshot.isEmpty() || snapshot.contains("/")) {
                throw new IllegalArgumentException("'" + text + "' is not an RBD image: bad snapshot name; expected " + SYNTAX);
            }
        }
        String[] parts = name.split("/", -1);
        if ((parts.length != 2 && parts.length != 3) || java.util.Arrays.stream(parts).anyMatch(String::isEmpty)) {
            throw new IllegalArgumentException("'" + text + "' is not an RBD image: expected " + SYNTAX);
        }
        return parts.length == 2
                ? new ImageName(parts[0], "", parts[1], snapshot)
                : new ImageName(parts[0], parts[1], parts[2], snapshot);
    }

    @Override
    public String toString()
    {
        return pool + "/" + (namespace.isEmpty() ? "" : namespace + "/") + image + (snapshot == null ? "" : "@" + snapshot);
    }
}
