/**
 * The two zstd builds snapfork runs on (native libzstd through zstd-napi, zstd-codec's WASM),
 * over real HTTP: data stored under one reads back under the other, the startup line says which
 * runs (SNAPFORK_ZSTD chooses), and each answers a client's zstd body it cannot decode in the
 * native dialect's envelope.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DestinationStream } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ZSTD_IMPLEMENTATIONS, createZstdCompressStream, createZstdDecompressStream } from '../../src/lib/zstd.js';
import { errorBodyOf } from '../support/error-body.js';
import { generatedBytes } from '../support/generated.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { describeTree, tarOfEntries, tempDir, untar } from '../support/trees.js';

const KIB = 1024;

/** The server's log lines, parsed. */
class Lines implements DestinationStream {
  readonly lines: { msg: string; zstd?: string }[] = [];
  write(text: string): void {
    this.lines.push(JSON.parse(text) as { msg: string; zstd?: string });
  }
  /** The `zstd` field of every startup line so far. */
  started(): (string | undefined)[] {
    return this.lines.filter((l) => l.msg.startsWith('snapfork listening on')).map((l) => l.zstd);
  }
}

async function zstdOf(body: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of Readable.from([body]).pipe(createZstdCompressStream())) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Files that compress (a CSV) and that do not (keystream), different per `version`. */
async function filesOf(version: number): Promise<Record<string, Buffer>> {
  const random: Buffer[] = [];
  for await (const part of generatedBytes(300 * KIB, 40 + version)) random.push(part);
  const rows = Array.from({ length: 40_000 }, (_, i) => `${i},v${version},label-${i % 97},${(i * 31) % 1000}\n`).join('');
  return { 'tables/rows.csv': Buffer.from(rows), 'blobs/random.bin': Buffer.concat(random), 'small.txt': Buffer.from(`version ${version}\n`) };
}

async function packBytes(dataDir: string): Promise<number> {
  const entries = await readdir(join(dataDir, 'chunks', 'packs'), { recursive: true, withFileTypes: true });
  const sizes = await Promise.all(entries.filter((e) => e.isFile() && e.name.endsWith('.pack')).map(async (e) => (await stat(join(e.parentPath, e.name))).size));
  return sizes.reduce((a, b) => a + b, 0);
}

let s: TestServer | undefined;
afterEach(async () => {
  await s?.stop();
  s = undefined;
});

describe.runIf(ZSTD_IMPLEMENTATIONS.length === 2)('native and WASM zstd', () => {
  it('read back what the other stored, a zstd push, a zstd archive and every file, and the start says which runs', async () => {
    const logs = new Lines();
    s = await startTestServer({ SNAPFORK_ZSTD: 'wasm' }, { logDestination: logs });
    const token = await s.token('alice');
    await s.createRepo(token, 'data');
    const push = async (tag: string, files: Record<string, Buffer>) => {
      const tar = tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body })));
      const res = await s!.api(`/api/v1/repos/alice/data/tags/${tag}/archive`, {
        method: 'PUT',
        token,
        body: await zstdOf(tar),
        headers: { 'content-type': 'application/x-tar', 'content-encoding': 'zstd' },
      });
      expect(res.status).toBe(201);
    };
    const readBack = async (tag: string, files: Record<string, Buffer>) => {
      for (const [path, body] of Object.entries(files)) {
        const res = await s!.api(`/api/v1/repos/alice/data/tags/${tag}/files/${path}`, { token });
        expect(res.status).toBe(200);
        expect(Buffer.from(await res.arrayBuffer()).equals(body), `${tag}:${path}`).toBe(true);
      }
      const archive = await s!.api(`/api/v1/repos/alice/data/tags/${tag}/archive`, { token, headers: { accept: 'application/zstd' } });
      expect(archive.headers.get('content-type')).toContain('application/zstd');
      const [got, want] = [await tempDir(), await tempDir()];
      await untar(Readable.from([Buffer.from(await archive.arrayBuffer())]).pipe(createZstdDecompressStream()), got);
      await untar(tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body }))), want);
      expect(await describeTree(got)).toEqual(await describeTree(want));
    };

    const v1 = await filesOf(1);
    await push('v1', v1);
    const content = Object.values(v1).reduce((n, b) => n + b.length, 0);
    // The CSV's chunks are stored as zstd blocks: what follows reads them across builds.
    expect(await packBytes(s.dataDir)).toBeLessThan(content * 0.6);

    s = await s.restart({ SNAPFORK_ZSTD: 'native' });
    await readBack('v1', v1);
    const v2 = await filesOf(2);
    await push('v2', v2);

    s = await s.restart({ SNAPFORK_ZSTD: 'wasm' });
    await readBack('v2', v2);
    await readBack('v1', v1);
    expect(logs.started()).toEqual(['wasm', 'native', 'wasm']);
  });
});

describe.each(ZSTD_IMPLEMENTATIONS)('a zstd request body on %s zstd', (implementation) => {
  it('that it cannot decode is answered in the native envelope, by a push and a chunk pack alike: 413 for a window beyond 8 MiB, 400 for garbage or a cut stream', async () => {
    s = await startTestServer({ SNAPFORK_ZSTD: implementation });
    const token = await s.token('alice');
    await s.createRepo(token, 'target');
    const push = (body: Buffer) =>
      s!.api('/api/v1/repos/alice/target/tags/v1/archive', { method: 'PUT', token, body, headers: { 'content-type': 'application/x-tar', 'content-encoding': 'zstd' } });
    const pack = (body: Buffer) =>
      s!.api('/api/v1/repos/alice/target/chunks', { method: 'POST', token, body, headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'zstd' } });
    // A frame header with a 16 MiB window (descriptor 14 << 3), then empty raw blocks.
    const wideWindow = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 14 << 3]), Buffer.alloc(64 * KIB)]);
    for (const res of [await push(wideWindow), await pack(wideWindow)]) {
      expect({ status: res.status, body: await errorBodyOf(res) }).toEqual({ status: 413, body: { success: false, error: expect.stringContaining('zstd window') } });
    }
    const tar = await zstdOf(tarOfEntries([{ path: 'a.csv', body: Buffer.from('a,b\n'.repeat(100_000)) }]));
    const garbage = Buffer.from('not zstd at all '.repeat(1000));
    for (const res of [await push(garbage), await pack(garbage), await push(tar.subarray(0, tar.length - 10))]) {
      expect({ status: res.status, body: await errorBodyOf(res) }).toEqual({ status: 400, body: { success: false, error: expect.stringContaining('not a valid zstd stream') } });
    }
    expect((await s.api('/api/v1/repos/alice/target/tags/v1', { token })).status).toBe(404);
    expect((await push(tar)).status).toBe(201);
  });
});
