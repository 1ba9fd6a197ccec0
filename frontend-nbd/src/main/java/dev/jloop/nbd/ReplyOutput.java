package dev.jloop.nbd;

import java.nio.ByteBuffer;

/**
 * Where the buffers of a reply go: the next gathering write of the connection's reply writer. A
 * buffer handed to {@link #gather} must keep its position and limit until {@link #flush} has
 * written it, so an encoder that reuses a buffer for the next part of a reply (a window of a header
 * buffer, a page shared by two chunks) flushes first. Used by the writer's thread, or by the reader
 * while it holds the writer's send lock.
 */
interface ReplyOutput
{
    /** Adds {@code buffer}'s remaining bytes to the write; writes what was gathered when the write is full. */
    void gather(ByteBuffer buffer);

    /** Writes everything gathered so far, unless the connection is broken, and forgets it. */
    void flush();
}
