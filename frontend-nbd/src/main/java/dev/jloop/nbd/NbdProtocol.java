package dev.jloop.nbd;

import dev.jloop.api.Errno;

/**
 * Constants of the NBD protocol, named and valued as in the spec
 * (<a href="https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md">doc/proto.md</a>);
 * what jloop serves of it is in {@code docs/nbd.md}. All integers on the wire are big-endian.
 */
final class NbdProtocol
{
    // Handshake
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final long REPLY_MAGIC = 0x3e889045565a9L;

    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 1 << 1;
    static final int FLAG_C_FIXED_NEWSTYLE = 1;
    static final int FLAG_C_NO_ZEROES = 1 << 1;

    // Options (NBD_OPT_*)
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_LIST = 3;
    static final int OPT_STARTTLS = 5;
    static final int OPT_INFO = 6;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;
    static final int OPT_LIST_META_CONTEXT = 9;
    static final int OPT_SET_META_CONTEXT = 10;

    // Option replies (NBD_REP_*)
    static final int REP_ACK = 1;
    static final int REP_SERVER = 2;
    static final int REP_INFO = 3;
    static final int REP_META_CONTEXT = 4;
    static final int REP_FLAG_ERROR = 1 << 31;
    static final int REP_ERR_UNSUP = REP_FLAG_ERROR | 1;
    static final int REP_ERR_POLICY = REP_FLAG_ERROR | 2;
    static final int REP_ERR_INVALID = REP_FLAG_ERROR | 3;
    static final int REP_ERR_PLATFORM = REP_FLAG_ERROR | 4;
    static final int REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5;
    static final int REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6;
    static final int REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7;
    static final int REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8;
    static final int REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9;

    // NBD_INFO_*
    static final int INFO_EXPORT = 0;
    static final int INFO_NAME = 1;
    static final int INFO_DESCRIPTION = 2;
    static final int INFO_BLOCK_SIZE = 3;

    // Transmission flags
    static final int FLAG_HAS_FLAGS = 1;
    static final int FLAG_READ_ONLY = 1 << 1;
    static final int FLAG_SEND_FLUSH = 1 << 2;
    static final int FLAG_SEND_FUA = 1 << 3;
    static final int FLAG_ROTATIONAL = 1 << 4;
    static final int FLAG_SEND_TRIM = 1 << 5;
    static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int FLAG_SEND_DF = 1 << 7;
    static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    static final int FLAG_SEND_CACHE = 1 << 10;
    static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    // Transmission
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int REQUEST_SIZE = 28;
    static final int SIMPLE_REPLY_SIZE = 16;
    static final int CHUNK_HEADER_SIZE = 20;

    // Structured reply chunks (NBD_REPLY_FLAG_*, NBD_REPLY_TYPE_*)
    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_OFFSET_HOLE = 2;
    /** 5 in the spec; the reference implementation's nbd.h once said 3. */
    static final int REPLY_TYPE_BLOCK_STATUS = 5;
    static final int REPLY_TYPE_ERROR = (1 << 15) + 1;
    static final int REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

    // Metadata contexts
    static final String BASE_ALLOCATION = "base:allocation";
    /** The id of {@code base:allocation} in SET_META_CONTEXT replies and BLOCK_STATUS chunks. */
    static final int BASE_ALLOCATION_ID = 1;
    static final int STATE_HOLE = 1;
    static final int STATE_ZERO = 1 << 1;

    // Commands (NBD_CMD_*)
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_CACHE = 5;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_BLOCK_STATUS = 7;

    // Command flags (NBD_CMD_FLAG_*)
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;
    static final int CMD_FLAG_DF = 1 << 2;
    static final int CMD_FLAG_REQ_ONE = 1 << 3;
    static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // Error values of replies (NBD_E*): the Linux numbers, but a closed set
    static final int NBD_EPERM = 1;
    static final int NBD_EIO = 5;
    static final int NBD_ENOMEM = 12;
    static final int NBD_EINVAL = 22;
    static final int NBD_ENOSPC = 28;
    static final int NBD_EOVERFLOW = 75;
    static final int NBD_ENOTSUP = 95;
    static final int NBD_ESHUTDOWN = 108;

    /** Block sizes advertised in NBD_INFO_BLOCK_SIZE; the spec's defaults (max payload 2^25). */
    static final int PREFERRED_BLOCK_SIZE = 4096;
    static final int MAX_PAYLOAD_ADVERTISED = 32 << 20;

    private NbdProtocol() {}

    /**
     * The one place where jloop's {@code -errno} becomes an NBD error. The spec allows only the values
     * above; everything else is EIO. EROFS and EFBIG have obvious NBD equivalents, as in nbdkit.
     */
    static int nbdError(int error)
    {
        switch (Math.abs(error)) {
            case 0: return 0;
            case Errno.EPERM:
            case Errno.EROFS:
                return NBD_EPERM;
            case Errno.EIO: return NBD_EIO;
            case Errno.ENOMEM: return NBD_ENOMEM;
            case Errno.EINVAL: return NBD_EINVAL;
            case Errno.ENOSPC:
            case Errno.EFBIG:
                return NBD_ENOSPC;
            case Errno.EOVERFLOW: return NBD_EOVERFLOW;
            case Errno.ENOTSUP: return NBD_ENOTSUP;
            case Errno.ESHUTDOWN: return NBD_ESHUTDOWN;
            default: return NBD_EIO;
        }
    }

    static String commandName(int type)
    {
        switch (type) {
            case CMD_READ: return "READ";
            case CMD_WRITE: return "WRITE";
            case CMD_DISC: return "DISC";
            case CMD_FLUSH: return "FLUSH";
            case CMD_TRIM: return "TRIM";
            case CMD_CACHE: return "CACHE";
            case CMD_WRITE_ZEROES: return "WRITE_ZEROES";
            case CMD_BLOCK_STATUS: return "BLOCK_STATUS";
            default: return "command " + type;
        }
    }
}
