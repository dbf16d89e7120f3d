/**
 * The constants and byte layouts of the NBD protocol that nbd-server.ts speaks, as numbered in
 * https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md. All integers on the wire
 * are big-endian.
 *
 * Handshake (fixed newstyle):
 *   S: u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
 *   C: u32 client flags
 *   then per option  C: u64 IHAVEOPT, u32 option, u32 length, data
 *                    S: u64 OPTION_REPLY_MAGIC, u32 option, u32 reply type, u32 length, data
 *   (NBD_OPT_EXPORT_NAME alone is answered with u64 size, u16 transmission flags [, 124 zeroes])
 *
 * Transmission:
 *   request       C: u32 REQUEST_MAGIC, u16 command flags, u16 type, u64 cookie, u64 offset,
 *                    u32 length [, length bytes for NBD_CMD_WRITE]
 *   simple reply  S: u32 SIMPLE_REPLY_MAGIC, u32 error, u64 cookie [, length bytes for a read]
 */

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

export const OPTION_HEADER_SIZE = 16;
export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
/** Zero padding after an NBD_OPT_EXPORT_NAME answer, unless the client set NBD_FLAG_C_NO_ZEROES. */
export const EXPORT_NAME_PADDING = 124;

// Handshake flags (server, u16) and client flags (u32).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (u16).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;

// Option reply types; errors have bit 31 set.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

// Information types of NBD_REP_INFO.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;

// Error values of a reply.
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;

/**
 * Block size constraints: the protocol's defaults, which a client may assume without asking, so
 * a client that never asks (NBD_OPT_EXPORT_NAME) is held to the same ones. Minimum 1 since any
 * byte range of a chunked file is readable; 32 MiB is the largest payload every client must
 * accept and bounds what one request can make the server hold.
 */
export const MIN_BLOCK_SIZE = 1;
export const PREFERRED_BLOCK_SIZE = 4096;
export const MAX_PAYLOAD_SIZE = 32 * 1024 * 1024;
