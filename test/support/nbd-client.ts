/**
 * A byte-level NBD client for tests: it sends exactly the messages a test builds, so a test can
 * drive what QEMU never sends (writes to a read-only export, out-of-range reads, bad flags) and
 * check each answer field by field.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import * as nbd from '../../src/runtime/nbd/nbd-protocol.js';
import { SocketReader } from '../../src/runtime/nbd/socket-reader.js';

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface SimpleReply {
  error: number;
  cookie: bigint;
}

export class NbdTestClient {
  private readonly reader: SocketReader;
  private readonly closed: Promise<unknown>;

  private constructor(private readonly socket: Socket) {
    this.reader = new SocketReader(socket);
    this.closed = once(socket, 'close');
  }

  /** Connects and reads the server's greeting; `handshakeFlags` is what the server offered. */
  static async connect(socketPath: string): Promise<{ client: NbdTestClient; handshakeFlags: number }> {
    const socket = connect(socketPath);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const client = new NbdTestClient(socket);
    const greeting = await client.read(18);
    if (greeting.readBigUInt64BE(0) !== nbd.NBDMAGIC || greeting.readBigUInt64BE(8) !== nbd.IHAVEOPT) throw new Error('not an NBD greeting');
    return { client, handshakeFlags: greeting.readUInt16BE(16) };
  }

  /** Connects, sends client flags and NBD_OPT_GO for the default export, and checks the ACK. */
  static async transmitting(socketPath: string): Promise<NbdTestClient> {
    const { client } = await NbdTestClient.connect(socketPath);
    client.sendClientFlags(nbd.NBD_FLAG_C_FIXED_NEWSTYLE | nbd.NBD_FLAG_C_NO_ZEROES);
    client.sendOption(nbd.NBD_OPT_GO, goData(''));
    for (;;) {
      const reply = await client.readOptionReply();
      if (reply.type === nbd.NBD_REP_ACK) return client;
      if (reply.type !== nbd.NBD_REP_INFO) throw new Error(`NBD_OPT_GO answered ${reply.type}`);
    }
  }

  sendClientFlags(flags: number): void {
    const data = Buffer.alloc(4);
    data.writeUInt32BE(flags >>> 0, 0);
    this.socket.write(data);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(nbd.OPTION_HEADER_SIZE);
    header.writeBigUInt64BE(nbd.IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== nbd.OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const option = header.readUInt32BE(8);
    const type = header.readUInt32BE(12);
    return { option, type, data: await this.read(header.readUInt32BE(16)) };
  }

  /** The request's bytes; `send` writes them, tests may also concatenate several into one write. */
  static request(type: number, r: { cookie: bigint; offset?: bigint; length?: number; flags?: number; payload?: Buffer }): Buffer {
    const header = Buffer.alloc(nbd.REQUEST_SIZE);
    header.writeUInt32BE(nbd.REQUEST_MAGIC, 0);
    header.writeUInt16BE(r.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(r.cookie, 8);
    header.writeBigUInt64BE(r.offset ?? 0n, 16);
    header.writeUInt32BE(r.length ?? r.payload?.length ?? 0, 24);
    return r.payload ? Buffer.concat([header, r.payload]) : header;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const reply = await this.read(nbd.SIMPLE_REPLY_SIZE);
    if (reply.readUInt32BE(0) !== nbd.SIMPLE_REPLY_MAGIC) throw new Error('bad simple reply magic');
    return { error: reply.readUInt32BE(4), cookie: reply.readBigUInt64BE(8) };
  }

  /** Exactly `length` bytes; throws when the server closes the connection first. */
  async read(length: number): Promise<Buffer> {
    const data = await this.reader.read(length);
    if (!data) throw new Error('the server closed the connection');
    return data;
  }

  /** Resolves when the server has closed the connection (and, after a clean close, sent nothing more). */
  async serverClosed(): Promise<{ trailing: number }> {
    await this.closed;
    let trailing = 0;
    while (await this.reader.read(1)) trailing++;
    return { trailing };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The data of NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16 info requests. */
export function goData(name: string, infoRequests: readonly number[] = [nbd.NBD_INFO_BLOCK_SIZE]): Buffer {
  const nameBytes = Buffer.from(name);
  const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoRequests.length);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  data.writeUInt16BE(infoRequests.length, 4 + nameBytes.length);
  infoRequests.forEach((info, i) => data.writeUInt16BE(info, 6 + nameBytes.length + 2 * i));
  return data;
}
