package dev.jloop.nbd;

import dev.jloop.api.BlockDevice;
import dev.jloop.api.ExtentSink;

import java.nio.ByteBuffer;

import static dev.jloop.nbd.NbdProtocol.BASE_ALLOCATION_ID;
import static dev.jloop.nbd.NbdProtocol.CHUNK_HEADER_SIZE;
import static dev.jloop.nbd.NbdProtocol.CMD_FLAG_REQ_ONE;
import static dev.jloop.nbd.NbdProtocol.NBD_EIO;
import static dev.jloop.nbd.NbdProtocol.REPLY_FLAG_DONE;
import static dev.jloop.nbd.NbdProtocol.REPLY_TYPE_BLOCK_STATUS;
import static dev.jloop.nbd.NbdProtocol.STATE_HOLE;
import static dev.jloop.nbd.NbdProtocol.STATE_ZERO;
import static dev.jloop.nbd.NbdProtocol.STRUCTURED_REPLY_MAGIC;
import static java.util.Objects.requireNonNull;

/**
 * Answers NBD_CMD_BLOCK_STATUS for {@code base:allocation} from the device's extents, on the
 * connection's reader thread (the device answers at once): one BLOCK_STATUS chunk for context id 1,
 * extents in order from the requested offset, adjacent ones with equal flags merged, never beyond
 * the requested range, at most {@link #MAX_EXTENTS} of them (one with REQ_ONE); the client asks
 * again from where the reply ended. The chunk is built whole in the request's status buffer, which
 * the reply writer sends as it is. One per connection, reused for every request.
 */
final class BlockStatus
        implements ExtentSink
{
    /** Most extents in one BLOCK_STATUS reply (the spec allows 2^20); clients ask again for the rest. */
    static final int MAX_EXTENTS = 1024;

    private final BlockDevice device;
    // While the device reports extents: the reply being filled, and the extent not yet written to it.
    private ByteBuffer reply;
    private int max;
    private long end;
    private int count;
    private long pendingLength;
    private int pendingFlags;

    BlockStatus(BlockDevice device)
    {
        this.device = requireNonNull(device, "device is null");
    }

    /** Builds the request's BLOCK_STATUS chunk in its status reply, or sets its error. */
    void answer(NbdRequest request)
    {
        ByteBuffer reply = request.statusReply().clear();
        reply.position(CHUNK_HEADER_SIZE + 4);
        this.reply = reply;
        this.max = (request.flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
        this.end = request.offset + request.length;
        this.count = 0;
        this.pendingLength = 0;
        long res = device.extents(request.offset, request.length, this);
        if (pendingLength > 0 && count < max) {
            emit();
        }
        pendingLength = 0;
        this.reply = null;
        if (res < 0 || count == 0) {
            request.error = res < 0 ? NbdProtocol.nbdError((int) res) : NBD_EIO;
            return;
        }
        reply.putInt(0, STRUCTURED_REPLY_MAGIC)
                .putShort(4, (short) REPLY_FLAG_DONE)
                .putShort(6, (short) REPLY_TYPE_BLOCK_STATUS)
                .putLong(8, request.cookie)
                .putInt(16, reply.position() - CHUNK_HEADER_SIZE)
                .putInt(CHUNK_HEADER_SIZE, BASE_ALLOCATION_ID);
        reply.flip();
    }

    @Override
    public boolean extent(long offset, long length, int type)
    {
        // A backend reporting past the request is clipped: no extent may reach beyond it.
        length = Math.min(length, end - offset);
        if (length <= 0) {
            return false;
        }
        // ExtentSink's HOLE and ZERO are NBD_STATE_HOLE and NBD_STATE_ZERO
        int flags = type & (STATE_HOLE | STATE_ZERO);
        if (pendingLength > 0 && flags == pendingFlags) {
            // lengths sum to at most the request's u32 length
            pendingLength += length;
            return true;
        }
        if (pendingLength > 0) {
            emit();
            if (count == max) {
                pendingLength = 0;
                return false;
            }
        }
        pendingLength = length;
        pendingFlags = flags;
        return true;
    }

    private void emit()
    {
        reply.putInt((int) pendingLength).putInt(pendingFlags);
        count++;
    }
}
