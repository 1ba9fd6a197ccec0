package dev.jloop.api;

/** Completion of a {@link Bio}, the kernel's {@code bi_end_io}. */
@FunctionalInterface
public interface BioEndIo
{
    /**
     * Called exactly once per submitted bio, from a device or backend thread; must not block.
     *
     * @param error 0, or {@code -errno}
     */
    void endIo(Bio bio, int error);
}
