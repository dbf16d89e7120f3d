/**
 * The NBD server against QEMU's own tools (qemu-img, qemu-io from qemu-utils, which .ci/run
 * installs) and, for what QEMU never sends, a byte-level client. Every export is a real
 * ChunkDiskSource over a real local chunk store.
 */
import { execFile } from 'node:child_process';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiskSource } from '../../src/domain/ports/vm-runtime.js';
import * as nbd from '../../src/runtime/nbd/nbd-protocol.js';
import { serveNbd, type NbdServer } from '../../src/runtime/nbd/nbd-server.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { ChunkStore } from '../../src/store/types.js';
import { storedDisk } from '../support/chunk-disk.js';
import { generatedBytes } from '../support/generated.js';
import { NbdTestClient, goData } from '../support/nbd-client.js';

const MIB = 1024 * 1024;
const PATTERN_AT = MIB;
const PATTERN_LENGTH = 64 * 1024;

/** `size` bytes of keystream with a run of 0x5a at 1 MiB and a run of zeros at 4 MiB. */
async function diskImage(size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of generatedBytes(size, 3)) parts.push(part);
  const image = Buffer.concat(parts);
  image.fill(0x5a, PATTERN_AT, PATTERN_AT + PATTERN_LENGTH);
  image.fill(0, 4 * MIB, 5 * MIB);
  return image;
}

interface Run {
  code: number;
  output: string;
}

/** Runs a QEMU tool; never throws on a non-zero exit, which tests check themselves. */
function run(command: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 16 * MIB }, (error, stdout, stderr) => {
      const code = error ? error.code : 0;
      if (typeof code !== 'number') return reject(new Error(`${command} did not run: ${error?.message}`));
      resolve({ code, output: stdout + stderr });
    });
  });
}

const uri = (server: NbdServer) => `nbd+unix:///?socket=${server.socketPath}`;

/** A DiskSource that counts the reads it is serving at once; each waits a turn of the event loop first. */
class CountingDisk implements DiskSource {
  active = 0;
  mostActive = 0;
  constructor(private readonly inner: DiskSource) {}
  get size() {
    return this.inner.size;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.mostActive = Math.max(this.mostActive, ++this.active);
    try {
      // Lets a server with no bound start every request it has already received before any ends.
      await new Promise((resolve) => setImmediate(resolve));
      return await this.inner.read(offset, length);
    } finally {
      this.active--;
    }
  }
}

describe('NBD server', () => {
  let root: string;
  let store: ChunkStore;
  let image: Buffer;
  let disk: DiskSource;
  let server: NbdServer;
  const readErrors: unknown[] = [];

  beforeAll(async () => {
    for (const tool of ['qemu-img', 'qemu-io']) {
      const found = await run(tool, ['--version']).catch(() => undefined);
      if (found?.code !== 0) throw new Error(`${tool} is missing: install Debian's qemu-utils (.ci/run does)`);
    }
    root = await mkdtemp(join(tmpdir(), 'snapfork-nbd-'));
    store = await openFsChunkStore(join(root, 'chunks'));
    image = await diskImage(10 * MIB + 3 * 512);
    ({ disk } = await storedDisk(store, image));
    server = await serveNbd(join(root, 'disk.sock'), disk, { onReadError: (e) => readErrors.push(e) });
  });

  afterAll(async () => {
    await server?.close();
    await store?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  describe('with QEMU as the client', () => {
    it('qemu-img convert copies the export byte for byte', async () => {
      const out = join(root, 'copy.raw');
      const converted = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(server), out]);
      expect(converted, converted.output).toMatchObject({ code: 0 });
      expect((await readFile(out)).equals(image)).toBe(true);
    });

    it('serves two clients at once', async () => {
      const outs = [join(root, 'first.raw'), join(root, 'second.raw')];
      const runs = await Promise.all(outs.map((out) => run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(server), out])));
      for (const [i, out] of outs.entries()) {
        expect(runs[i], runs[i]!.output).toMatchObject({ code: 0 });
        expect((await readFile(out)).equals(image)).toBe(true);
      }
    });

    it('qemu-io reads a range with its known pattern, and tells a range without it', async () => {
      const read = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P 0x5a ${PATTERN_AT} ${PATTERN_LENGTH}`, '-c', 'read -P 0x5a 0 4k', uri(server)]);
      expect(read.output).toContain(`read ${PATTERN_LENGTH}/${PATTERN_LENGTH} bytes at offset ${PATTERN_AT}`);
      expect(read.output).toContain('Pattern verification failed at offset 0');
    });

    it('a qcow2 overlay over the export takes the writes and leaves the export untouched', async () => {
      const overlay = join(root, 'overlay.qcow2');
      const created = await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', uri(server), overlay]);
      expect(created, created.output).toMatchObject({ code: 0 });
      const written = await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 4k', overlay]);
      expect(written.output).toContain('wrote 4096/4096 bytes at offset 0');
      const reread = await run('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0xab 0 4k', '-c', `read -P 0x5a ${PATTERN_AT} ${PATTERN_LENGTH}`, overlay]);
      expect(reread.output).toContain('read 4096/4096 bytes at offset 0');
      expect(reread.output).toContain(`read ${PATTERN_LENGTH}/${PATTERN_LENGTH} bytes at offset ${PATTERN_AT}`);
      expect(reread.output).not.toContain('Pattern verification failed');
      // The base still reads as it was, through the server and through the disk itself.
      expect((await disk.read(0, 8192)).equals(image.subarray(0, 8192))).toBe(true);
      const base = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0xab 0 4k', uri(server)]);
      expect(base.output).toContain('Pattern verification failed at offset 0');
    });
  });

  it('pads a disk that ends mid-sector with zeros to the end of that sector, which QEMU reads whole', async () => {
    const odd = await storedDisk(store, image.subarray(0, 2 * MIB + 777));
    const oddServer = await serveNbd(join(root, 'odd.sock'), odd.disk);
    try {
      const padded = Buffer.concat([image.subarray(0, 2 * MIB + 777), Buffer.alloc(512 - 777 % 512)]);
      expect(oddServer.size).toBe(padded.length);
      const out = join(root, 'odd.raw');
      const converted = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(oddServer), out]);
      expect(converted, converted.output).toMatchObject({ code: 0 });
      expect((await readFile(out)).equals(padded)).toBe(true);
      const client = await NbdTestClient.transmitting(oddServer.socketPath);
      client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 1n, offset: BigInt(2 * MIB + 700), length: 324 }));
      expect(await client.readSimpleReply()).toEqual({ error: 0, cookie: 1n });
      expect((await client.read(324)).equals(padded.subarray(2 * MIB + 700))).toBe(true);
      client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 2n, offset: BigInt(padded.length), length: 1 }));
      expect(await client.readSimpleReply()).toEqual({ error: nbd.NBD_EINVAL, cookie: 2n });
      client.close();
    } finally {
      await oddServer.close();
    }
  });

  describe('with a byte-level client', () => {
    const TRANSMISSION_FLAGS = nbd.NBD_FLAG_HAS_FLAGS | nbd.NBD_FLAG_READ_ONLY | nbd.NBD_FLAG_SEND_FLUSH | nbd.NBD_FLAG_CAN_MULTI_CONN;

    it('offers fixed newstyle and drops a client that sets an unknown flag', async () => {
      const { client, handshakeFlags } = await NbdTestClient.connect(server.socketPath);
      expect(handshakeFlags).toBe(nbd.NBD_FLAG_FIXED_NEWSTYLE | nbd.NBD_FLAG_NO_ZEROES);
      client.sendClientFlags(nbd.NBD_FLAG_C_FIXED_NEWSTYLE | (1 << 5));
      expect(await client.serverClosed()).toEqual({ trailing: 0 });
    });

    it('answers the options it knows, refuses the others, and ends on NBD_OPT_ABORT', async () => {
      const { client } = await NbdTestClient.connect(server.socketPath);
      client.sendClientFlags(nbd.NBD_FLAG_C_FIXED_NEWSTYLE | nbd.NBD_FLAG_C_NO_ZEROES);

      client.sendOption(nbd.NBD_OPT_LIST);
      const listed = await client.readOptionReply();
      expect(listed).toMatchObject({ option: nbd.NBD_OPT_LIST, type: nbd.NBD_REP_SERVER });
      expect(listed.data.readUInt32BE(0)).toBe(0); // the default export's empty name
      expect(await client.readOptionReply()).toMatchObject({ option: nbd.NBD_OPT_LIST, type: nbd.NBD_REP_ACK });
      client.sendOption(nbd.NBD_OPT_LIST, Buffer.from('x'));
      expect(await client.readOptionReply()).toMatchObject({ type: nbd.NBD_REP_ERR_INVALID });

      const STRUCTURED_REPLY = 8;
      const STARTTLS = 5;
      for (const option of [STRUCTURED_REPLY, STARTTLS, 0x1234]) {
        client.sendOption(option);
        expect(await client.readOptionReply()).toEqual({ option, type: nbd.NBD_REP_ERR_UNSUP, data: Buffer.alloc(0) });
      }

      client.sendOption(nbd.NBD_OPT_INFO, goData('no-such-export'));
      expect(await client.readOptionReply()).toMatchObject({ type: nbd.NBD_REP_ERR_UNKNOWN });
      client.sendOption(nbd.NBD_OPT_INFO, goData('').subarray(0, 5));
      expect(await client.readOptionReply()).toMatchObject({ type: nbd.NBD_REP_ERR_INVALID });
      client.sendOption(nbd.NBD_OPT_INFO, Buffer.concat([goData(''), Buffer.alloc(1)]));
      expect(await client.readOptionReply()).toMatchObject({ type: nbd.NBD_REP_ERR_INVALID });
      client.sendOption(nbd.NBD_OPT_INFO, Buffer.alloc(70 * 1024));
      expect(await client.readOptionReply()).toMatchObject({ type: nbd.NBD_REP_ERR_TOO_BIG });

      client.sendOption(nbd.NBD_OPT_INFO, goData(''));
      const exportInfo = await client.readOptionReply();
      expect(exportInfo).toMatchObject({ option: nbd.NBD_OPT_INFO, type: nbd.NBD_REP_INFO });
      expect(exportInfo.data.length).toBe(12);
      expect(exportInfo.data.readUInt16BE(0)).toBe(nbd.NBD_INFO_EXPORT);
      expect(exportInfo.data.readBigUInt64BE(2)).toBe(BigInt(image.length));
      expect(exportInfo.data.readUInt16BE(10)).toBe(TRANSMISSION_FLAGS);
      const blockSize = await client.readOptionReply();
      expect(blockSize.data.length).toBe(14);
      expect([blockSize.data.readUInt16BE(0), blockSize.data.readUInt32BE(2), blockSize.data.readUInt32BE(6), blockSize.data.readUInt32BE(10)]).toEqual([
        nbd.NBD_INFO_BLOCK_SIZE,
        1,
        4096,
        32 * MIB,
      ]);
      expect(await client.readOptionReply()).toMatchObject({ option: nbd.NBD_OPT_INFO, type: nbd.NBD_REP_ACK });

      // Still haggling after NBD_OPT_INFO: an abort is acknowledged and ends the session.
      client.sendOption(nbd.NBD_OPT_ABORT);
      expect(await client.readOptionReply()).toMatchObject({ option: nbd.NBD_OPT_ABORT, type: nbd.NBD_REP_ACK });
      expect(await client.serverClosed()).toEqual({ trailing: 0 });
    });

    for (const noZeroes of [true, false]) {
      it(`enters transmission on NBD_OPT_EXPORT_NAME ${noZeroes ? 'without' : 'with'} the 124 zero bytes`, async () => {
        const { client } = await NbdTestClient.connect(server.socketPath);
        client.sendClientFlags(nbd.NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? nbd.NBD_FLAG_C_NO_ZEROES : 0));
        client.sendOption(nbd.NBD_OPT_EXPORT_NAME);
        const answer = await client.read(10 + (noZeroes ? 0 : 124));
        expect(answer.readBigUInt64BE(0)).toBe(BigInt(image.length));
        expect(answer.readUInt16BE(8)).toBe(TRANSMISSION_FLAGS);
        expect(answer.subarray(10).equals(Buffer.alloc(answer.length - 10))).toBe(true);
        client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 7n, offset: 5n, length: 100 }));
        expect(await client.readSimpleReply()).toEqual({ error: 0, cookie: 7n });
        expect((await client.read(100)).equals(image.subarray(5, 105))).toBe(true);
        client.close();
      });
    }

    it('drops a client asking NBD_OPT_EXPORT_NAME for an export it does not have', async () => {
      const { client } = await NbdTestClient.connect(server.socketPath);
      client.sendClientFlags(nbd.NBD_FLAG_C_FIXED_NEWSTYLE);
      client.sendOption(nbd.NBD_OPT_EXPORT_NAME, Buffer.from('no-such-export'));
      expect(await client.serverClosed()).toEqual({ trailing: 0 });
    });

    it('refuses bad reads with EINVAL and every write with EPERM, then reads on', async () => {
      const client = await NbdTestClient.transmitting(server.socketPath);
      const size = BigInt(image.length);
      const WRITE_PAYLOAD = Buffer.alloc(4096, 0xee);
      const UNKNOWN_COMMAND = 99;
      const refused: [number, Parameters<typeof NbdTestClient.request>[1], number][] = [
        [nbd.NBD_CMD_READ, { cookie: 1n, offset: size - 10n, length: 11 }, nbd.NBD_EINVAL],
        [nbd.NBD_CMD_READ, { cookie: 2n, offset: 2n ** 64n - 1n, length: 2 }, nbd.NBD_EINVAL],
        [nbd.NBD_CMD_READ, { cookie: 3n, offset: 0n, length: 32 * MIB + 1 }, nbd.NBD_EINVAL],
        [nbd.NBD_CMD_READ, { cookie: 4n, offset: 0n, length: 512, flags: 1 }, nbd.NBD_EINVAL],
        [nbd.NBD_CMD_WRITE, { cookie: 5n, offset: 0n, payload: WRITE_PAYLOAD }, nbd.NBD_EPERM],
        [nbd.NBD_CMD_TRIM, { cookie: 6n, offset: 0n, length: 4096 }, nbd.NBD_EPERM],
        [nbd.NBD_CMD_WRITE_ZEROES, { cookie: 7n, offset: 0n, length: 4096 }, nbd.NBD_EPERM],
        [nbd.NBD_CMD_FLUSH, { cookie: 8n }, 0],
        [UNKNOWN_COMMAND, { cookie: 9n }, nbd.NBD_EINVAL],
      ];
      for (const [type, request, error] of refused) {
        client.send(NbdTestClient.request(type, request));
        expect(await client.readSimpleReply(), `command ${type}, cookie ${request.cookie}`).toEqual({ error, cookie: request.cookie });
      }
      // The write's payload was consumed, not taken for requests: the connection reads on.
      client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 10n, offset: size - 10n, length: 10 }));
      expect(await client.readSimpleReply()).toEqual({ error: 0, cookie: 10n });
      expect((await client.read(10)).equals(image.subarray(image.length - 10))).toBe(true);
      expect((await disk.read(0, 4096)).equals(image.subarray(0, 4096))).toBe(true);
      client.send(NbdTestClient.request(nbd.NBD_CMD_DISC, { cookie: 11n }));
      expect(await client.serverClosed()).toEqual({ trailing: 0 });
    });

    it('drops a client whose request has a bad magic', async () => {
      const client = await NbdTestClient.transmitting(server.socketPath);
      const request = NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 1n, length: 512 });
      request.writeUInt32BE(0x12560953, 0);
      client.send(request);
      expect(await client.serverClosed()).toEqual({ trailing: 0 });
    });
  });

  describe('with many requests in flight', () => {
    let counting: CountingDisk;
    let bounded: NbdServer;

    beforeAll(async () => {
      counting = new CountingDisk(disk);
      bounded = await serveNbd(join(root, 'counting.sock'), counting);
    });
    afterAll(() => bounded?.close());

    /** Sends every read in one write, then matches the replies (in any order) to them by cookie. */
    async function pipelined(reads: { offset: number; length: number }[]): Promise<void> {
      const client = await NbdTestClient.transmitting(bounded.socketPath);
      counting.mostActive = 0;
      client.send(Buffer.concat(reads.map((r, i) => NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: BigInt(i), offset: BigInt(r.offset), length: r.length }))));
      const answered = new Set<number>();
      for (const _ of reads) {
        const reply = await client.readSimpleReply();
        const read = reads[Number(reply.cookie)]!;
        expect(reply.error).toBe(0);
        expect((await client.read(read.length)).equals(image.subarray(read.offset, read.offset + read.length))).toBe(true);
        answered.add(Number(reply.cookie));
      }
      expect(answered.size).toBe(reads.length);
      client.close();
    }

    it('answers 64 pipelined reads, at most 16 of them at once', async () => {
      await pipelined(Array.from({ length: 64 }, (_, i) => ({ offset: i * 40_000, length: 4096 })));
      expect(counting.mostActive).toBeGreaterThan(1);
      expect(counting.mostActive).toBeLessThanOrEqual(16);
    });

    it('holds at most 64 MiB of large reads at once', async () => {
      const length = 5 * MIB;
      await pipelined(Array.from({ length: 16 }, (_, i) => ({ offset: i * 300_000, length })));
      expect(counting.mostActive).toBeGreaterThan(1);
      expect(counting.mostActive).toBeLessThanOrEqual(Math.floor((64 * MIB) / length));
    });
  });

  describe('over a disk that fails', () => {
    it('answers EIO for the failing range and serves on, on the same connection', async () => {
      const broken = await openFsChunkStore(join(root, 'broken-chunks'));
      const errors: unknown[] = [];
      const { disk: failing, chunks } = await storedDisk(broken, image);
      const failingServer = await serveNbd(join(root, 'failing.sock'), failing, { onReadError: (e) => errors.push(e) });
      try {
        const victim = 10;
        const start = chunks.slice(0, victim).reduce((n, c) => n + c.size, 0);
        expect(await broken.delete(chunks[victim]!.digest)).toBe(true);
        const read = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read ${start} 512`, '-c', 'read -P 0x5a 1M 4k', uri(failingServer)]);
        expect(read.output).toContain('read failed: Input/output error');
        expect(read.output).toContain(`read 4096/4096 bytes at offset ${MIB}`);
        expect(errors.length).toBeGreaterThan(0);
        expect(errors[0]).toMatchObject({ kind: 'not_found' });
        // And the server still serves new clients.
        const client = await NbdTestClient.transmitting(failingServer.socketPath);
        client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 1n, offset: BigInt(start), length: 512 }));
        expect(await client.readSimpleReply()).toEqual({ error: nbd.NBD_EIO, cookie: 1n });
        client.send(NbdTestClient.request(nbd.NBD_CMD_READ, { cookie: 2n, offset: 0n, length: 512 }));
        expect(await client.readSimpleReply()).toEqual({ error: 0, cookie: 2n });
        expect((await client.read(512)).equals(image.subarray(0, 512))).toBe(true);
        client.close();
      } finally {
        await failingServer.close();
        await broken.close();
      }
    });
  });

  it('close() ends the connections and removes the socket file', async () => {
    const closing = await serveNbd(join(root, 'closing.sock'), disk);
    const client = await NbdTestClient.transmitting(closing.socketPath);
    await closing.close();
    await client.serverClosed();
    await expect(access(closing.socketPath)).rejects.toThrow();
    expect(readErrors).toEqual([]);
  });
});
