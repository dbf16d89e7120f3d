/**
 * A read-only NBD server on a Unix socket, exporting one DiskSource: QEMU opens it as the raw
 * backing file of a VM's qcow2 overlay (`-b 'nbd+unix:///?socket=<path>'`), so the base disk is
 * read from the chunk store range by range, as the guest touches it, and never copied whole.
 *
 * It speaks the fixed newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME,
 * NBD_OPT_LIST, NBD_OPT_ABORT; every other option, structured replies included, is answered
 * NBD_REP_ERR_UNSUP) and simple replies only. Byte layouts are in nbd-protocol.ts.
 *
 * The export is the disk padded with zeros to a whole number of 512-byte sectors. QEMU (7.2)
 * sizes every block device in sectors, so it reads an odd-sized export's last sector whole, and
 * with simple replies it then takes that sector's 512 bytes from the socket whatever length it
 * asked for: an export that ended mid-sector would desynchronise its reply stream.
 *
 * Memory per connection is bounded: at most MAX_REQUESTS_IN_FLIGHT requests, and replies of
 * MAX_BYTES_IN_FLIGHT bytes, are between being received and being handed to the kernel; past
 * that the server stops reading requests, and SocketReader stops the client. Replies go out as
 * they are ready, matched to requests by cookie, as the protocol allows.
 */
import { createServer, type Socket } from 'node:net';
import type { DiskSource } from '../../domain/ports/vm-runtime.js';
import * as nbd from './nbd-protocol.js';
import { SocketReader } from './socket-reader.js';

/**
 * Read-only, so nothing is ever volatile: NBD_CMD_FLUSH is trivially honoured (and advertised,
 * so a client may flush its whole block graph without special-casing this export), and every
 * connection sees the same immutable bytes, which is what NBD_FLAG_CAN_MULTI_CONN promises.
 */
const TRANSMISSION_FLAGS = nbd.NBD_FLAG_HAS_FLAGS | nbd.NBD_FLAG_READ_ONLY | nbd.NBD_FLAG_SEND_FLUSH | nbd.NBD_FLAG_CAN_MULTI_CONN;
const HANDSHAKE_FLAGS = nbd.NBD_FLAG_FIXED_NEWSTYLE | nbd.NBD_FLAG_NO_ZEROES;
const KNOWN_CLIENT_FLAGS = nbd.NBD_FLAG_C_FIXED_NEWSTYLE | nbd.NBD_FLAG_C_NO_ZEROES;
/** Option data a client may send: an export name (4096 bytes at most) and a few info requests. */
const MAX_OPTION_DATA = 16 * 1024;
/** QEMU keeps up to 16 requests outstanding per connection; more would only queue here. */
const MAX_REQUESTS_IN_FLIGHT = 16;
/** Two maximal reads: enough to keep the disk and the socket busy at once. */
const MAX_BYTES_IN_FLIGHT = 2 * nbd.MAX_PAYLOAD_SIZE;
const SECTOR_SIZE = 512;
/** QEMU opens one connection per block node; a handful is plenty and bounds the total memory. */
const DEFAULT_MAX_CONNECTIONS = 8;

export interface NbdServerOptions {
  /** The export's name; the default export (the empty name, QEMU's default) is always served too. */
  exportName?: string;
  /** Connections served at once; more are refused. */
  maxConnections?: number;
  /** Told of every failed `disk.read` (the client was answered EIO), to be logged; must not throw. */
  onReadError?: (error: unknown, range: { offset: number; length: number }) => void;
}

export interface NbdServer {
  readonly socketPath: string;
  /** The export's size: the disk's, rounded up to whole 512-byte sectors. */
  readonly size: number;
  /** Stops listening and drops every connection (in-flight reads go unanswered). Idempotent. */
  close(): Promise<void>;
}

/** Listens on `socketPath` (which must not exist) and serves `disk` read-only to every client. */
export async function serveNbd(socketPath: string, disk: DiskSource, options: NbdServerOptions = {}): Promise<NbdServer> {
  if (!Number.isSafeInteger(disk.size) || disk.size < 0) throw new Error(`disk size ${disk.size} is not a byte count`);
  const exportName = Buffer.from(options.exportName ?? '');
  const exportSize = Math.ceil(disk.size / SECTOR_SIZE) * SECTOR_SIZE;
  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    // A client that vanishes mid-reply (EPIPE, ECONNRESET) is only a closed connection.
    socket.on('error', () => undefined);
    socket.on('close', () => connections.delete(socket));
    void new NbdConnection(socket, disk, exportSize, exportName, options.onReadError).run();
  });
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // A failed accept (EMFILE, say) costs that one client its connection; the server listens on.
  server.on('error', () => undefined);
  return {
    socketPath,
    size: exportSize,
    close: () =>
      new Promise<void>((resolve) => {
        // Node unlinks the socket file once the server has closed.
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      }),
  };
}

/** How a request is answered: an error value (0 for success) and, for a read, its bytes. */
interface Outcome {
  error: number;
  data?: Buffer;
}

/** The client broke a MUST of the protocol: the connection is dropped (a hard disconnect). */
class ProtocolViolation extends Error {}


class NbdConnection {
  private readonly reader: SocketReader;
  private noZeroes = false;
  private inFlight = 0;
  private bytesInFlight = 0;
  private answered: (() => void) | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly disk: DiskSource,
    /** disk.size rounded up to whole sectors. */
    private readonly exportSize: number,
    private readonly exportName: Buffer,
    private readonly onReadError: NbdServerOptions['onReadError'],
  ) {
    this.reader = new SocketReader(socket);
  }

  async run(): Promise<void> {
    try {
      if (await this.negotiate()) await this.transmit();
    } catch {
      // A protocol violation, or a bug here: either way only this connection ends, never the server.
      this.socket.destroy();
    }
  }

  /** The handshake and option haggling; true when the client entered the transmission phase. */
  private async negotiate(): Promise<boolean> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(nbd.NBDMAGIC, 0);
    greeting.writeBigUInt64BE(nbd.IHAVEOPT, 8);
    greeting.writeUInt16BE(HANDSHAKE_FLAGS, 16);
    this.socket.write(greeting);
    const clientFlags = await this.reader.read(4);
    if (!clientFlags) return false;
    const flags = clientFlags.readUInt32BE(0);
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) throw new ProtocolViolation(`unknown client flags ${flags}`);
    this.noZeroes = (flags & nbd.NBD_FLAG_C_NO_ZEROES) !== 0;

    for (;;) {
      const header = await this.reader.read(nbd.OPTION_HEADER_SIZE);
      if (!header) return false;
      if (header.readBigUInt64BE(0) !== nbd.IHAVEOPT) throw new ProtocolViolation('bad option magic');
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > MAX_OPTION_DATA) {
        // NBD_OPT_EXPORT_NAME has no error reply: an export that cannot be granted ends the session.
        if (option === nbd.NBD_OPT_EXPORT_NAME) throw new ProtocolViolation('export name too long');
        if (!(await this.reader.skip(length))) return false;
        this.optionReply(option, nbd.NBD_REP_ERR_TOO_BIG);
        continue;
      }
      const data = await this.reader.read(length);
      if (!data) return false;
      switch (option) {
        case nbd.NBD_OPT_EXPORT_NAME:
          if (!this.isExport(data)) throw new ProtocolViolation('unknown export');
          this.sendExportNameAnswer();
          return true;
        case nbd.NBD_OPT_INFO:
        case nbd.NBD_OPT_GO:
          if (this.answerInfo(option, data) && option === nbd.NBD_OPT_GO) return true;
          break;
        case nbd.NBD_OPT_LIST:
          if (length !== 0) {
            this.optionReply(option, nbd.NBD_REP_ERR_INVALID);
          } else {
            const server = Buffer.alloc(4 + this.exportName.length);
            server.writeUInt32BE(this.exportName.length, 0);
            this.exportName.copy(server, 4);
            this.optionReply(option, nbd.NBD_REP_SERVER, server);
            this.optionReply(option, nbd.NBD_REP_ACK);
          }
          break;
        case nbd.NBD_OPT_ABORT:
          this.optionReply(option, nbd.NBD_REP_ACK);
          this.socket.end();
          return false;
        default:
          this.optionReply(option, nbd.NBD_REP_ERR_UNSUP);
      }
    }
  }

  /** The default export (the empty name) and the configured name both name the one disk. */
  private isExport(name: Buffer): boolean {
    return name.length === 0 || name.equals(this.exportName);
  }

  private sendExportNameAnswer(): void {
    const answer = Buffer.alloc(10 + (this.noZeroes ? 0 : nbd.EXPORT_NAME_PADDING));
    answer.writeBigUInt64BE(BigInt(this.exportSize), 0);
    answer.writeUInt16BE(TRANSMISSION_FLAGS, 8);
    this.socket.write(answer);
  }

  /**
   * Answers NBD_OPT_INFO or NBD_OPT_GO (data: u32 name length, name, u16 count, u16 x count info
   * requests); true when it ended in NBD_REP_ACK. The export and block size information is sent
   * whether asked for or not: the block sizes are the protocol's defaults, which bind a client
   * that does not ask just as well.
   */
  private answerInfo(option: number, data: Buffer): boolean {
    const nameLength = data.length >= 6 ? data.readUInt32BE(0) : Infinity;
    if (nameLength > data.length - 6 || data.length !== 4 + nameLength + 2 + 2 * data.readUInt16BE(4 + nameLength)) {
      this.optionReply(option, nbd.NBD_REP_ERR_INVALID);
      return false;
    }
    if (!this.isExport(data.subarray(4, 4 + nameLength))) {
      this.optionReply(option, nbd.NBD_REP_ERR_UNKNOWN);
      return false;
    }
    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(nbd.NBD_INFO_EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(this.exportSize), 2);
    exportInfo.writeUInt16BE(TRANSMISSION_FLAGS, 10);
    this.optionReply(option, nbd.NBD_REP_INFO, exportInfo);
    const blockSize = Buffer.alloc(14);
    blockSize.writeUInt16BE(nbd.NBD_INFO_BLOCK_SIZE, 0);
    blockSize.writeUInt32BE(nbd.MIN_BLOCK_SIZE, 2);
    blockSize.writeUInt32BE(nbd.PREFERRED_BLOCK_SIZE, 6);
    blockSize.writeUInt32BE(nbd.MAX_PAYLOAD_SIZE, 10);
    this.optionReply(option, nbd.NBD_REP_INFO, blockSize);
    this.optionReply(option, nbd.NBD_REP_ACK);
    return true;
  }

  private optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(20);
    header.writeBigUInt64BE(nbd.OPTION_REPLY_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(data.length, 16);
    this.socket.write(data.length > 0 ? Buffer.concat([header, data]) : header);
  }

  /** The transmission phase: requests until NBD_CMD_DISC or the client goes away. */
  private async transmit(): Promise<void> {
    for (;;) {
      const request = await this.reader.read(nbd.REQUEST_SIZE);
      if (!request) return;
      if (request.readUInt32BE(0) !== nbd.REQUEST_MAGIC) throw new ProtocolViolation('bad request magic');
      const flags = request.readUInt16BE(4);
      const type = request.readUInt16BE(6);
      const cookie = request.subarray(8, 16);
      const offset = request.readBigUInt64BE(16);
      const length = request.readUInt32BE(24);
      switch (type) {
        case nbd.NBD_CMD_READ:
          // No command flag applies: FUA was not offered and DF needs structured replies.
          if (flags !== 0 || length > nbd.MAX_PAYLOAD_SIZE || offset + BigInt(length) > BigInt(this.exportSize)) {
            await this.answer(cookie, 0, async () => ({ error: nbd.NBD_EINVAL }));
          } else {
            await this.answer(cookie, length, () => this.read(Number(offset), length));
          }
          break;
        case nbd.NBD_CMD_WRITE:
          // The payload follows the request and must be consumed to find the next request.
          if (!(await this.reader.skip(length))) return;
          await this.answer(cookie, 0, async () => ({ error: nbd.NBD_EPERM }));
          break;
        case nbd.NBD_CMD_TRIM:
        case nbd.NBD_CMD_WRITE_ZEROES:
          await this.answer(cookie, 0, async () => ({ error: nbd.NBD_EPERM }));
          break;
        case nbd.NBD_CMD_FLUSH:
          await this.answer(cookie, 0, async () => ({ error: flags === 0 ? 0 : nbd.NBD_EINVAL }));
          break;
        case nbd.NBD_CMD_DISC:
          // No reply; the requests already made are still answered before the connection ends.
          while (this.inFlight > 0) await this.nextAnswered();
          this.socket.end();
          return;
        default:
          await this.answer(cookie, 0, async () => ({ error: nbd.NBD_EINVAL }));
      }
    }
  }

  /**
   * Waits for room, then answers in the background. The request counts in flight, with the
   * `bytes` its reply carries, until the reply has been handed to the kernel: a client that
   * does not read its replies soon stops being read from.
   */
  private async answer(cookie: Buffer, bytes: number, outcome: () => Promise<Outcome>): Promise<void> {
    while (this.inFlight >= MAX_REQUESTS_IN_FLIGHT || (this.inFlight > 0 && this.bytesInFlight + bytes > MAX_BYTES_IN_FLIGHT)) {
      await this.nextAnswered();
    }
    this.inFlight++;
    this.bytesInFlight += bytes;
    void outcome()
      .then(({ error, data }) => this.reply(cookie, error, data))
      .then(() => {
        this.inFlight--;
        this.bytesInFlight -= bytes;
        const answered = this.answered;
        this.answered = undefined;
        answered?.();
      });
  }

  private nextAnswered(): Promise<void> {
    return new Promise((resolve) => (this.answered = resolve));
  }

  /**
   * A read's outcome. A failed read, or one that returns the wrong number of bytes, is answered
   * EIO with no payload, so the client never receives bytes that are not the disk's.
   */
  private async read(offset: number, length: number): Promise<Outcome> {
    try {
      return { error: 0, data: await this.readPadded(offset, length) };
    } catch (e) {
      this.onReadError?.(e, { offset, length });
      return { error: nbd.NBD_EIO };
    }
  }

  /** The export's bytes: the disk's, then zeros to the end of its last sector. */
  private async readPadded(offset: number, length: number): Promise<Buffer> {
    const fromDisk = Math.max(0, Math.min(length, this.disk.size - offset));
    const data = fromDisk > 0 ? await this.disk.read(offset, fromDisk) : Buffer.alloc(0);
    if (data.length !== fromDisk) throw new Error(`the disk returned ${data.length} bytes for a read of ${fromDisk}`);
    return fromDisk === length ? data : Buffer.concat([data, Buffer.alloc(length - fromDisk)]);
  }

  /** Sends a simple reply; resolves once it is written out (or the connection is gone). */
  private reply(cookie: Buffer, error: number, data?: Buffer): Promise<void> {
    const header = Buffer.alloc(nbd.SIMPLE_REPLY_SIZE);
    header.writeUInt32BE(nbd.SIMPLE_REPLY_MAGIC, 0);
    header.writeUInt32BE(error, 4);
    cookie.copy(header, 8);
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      // Corked, header and payload leave in one write, and no other reply comes between them.
      if (!data) return void this.socket.write(header, () => resolve());
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(data, () => resolve());
      this.socket.uncork();
    });
  }
}
