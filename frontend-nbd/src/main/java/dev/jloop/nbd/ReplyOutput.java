package dev.jloop.nbd;

import java.nio.ByteBuffer;

import static dev.jloop.nbd.NbdProtocol.CMD_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_ERROR;
import static dev.jloop.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;

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

    /**
     * Gathers the whole reply of {@code request}: a simple reply header and, for a READ, its pages;
     * or, structured, one error chunk, the BLOCK_STATUS chunk the reader made, or the chunks of a READ.
     */
    default void addReply(NbdRequest request)
    {
        if (request.structured) {
            if (request.error != 0) {
                gather(StructuredRead.errorChunk(request, REPLY_TYPE_ERROR, request.error, 0));
            }
            else if (request.type == CMD_BLOCK_STATUS) {
                gather(request.statusReply);
            }
            else {
                request.read.encode(request, this);
            }
            return;
        }
        gather(request.replyHeader.clear()
                .putInt(SIMPLE_REPLY_MAGIC)
                .putInt(request.error)
                .putLong(request.cookie)
                .flip());
        if (request.type == CMD_READ && request.error == 0 && request.nrPages > 0) {
            request.preparePageBuffers();
            for (int i = 0; i < request.nrPages; i++) {
                gather(request.pages[i].buffer());
            }
        }
    }
}
