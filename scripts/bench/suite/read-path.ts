/**
 * Read latency of one file, one range and one directory of a 20,000-file tag, through a real
 * server in its own process (issue 15's read-path figures).
 *
 * The tag holds DATASET_FILES small files (100 to 4,000 bytes, generated from a seed) in 100
 * directories of 200, and LARGE_FILES files of 64 MiB. Each figure is the p50 and p99 of
 * `reads` sequential requests over one kept-alive connection, after a warm-up, so that it is
 * the server's time per request, not the client's; beside it the server's CPU time a request,
 * which other load on the machine (2 shared cores) inflates far less than it does latency.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Header } from 'tar';
import { expect } from 'vitest';
import { generatedBytes } from '../../../test/support/generated.js';
import { DATASET_FILES, startServerProcess } from '../server-process.js';

const MIB = 1024 * 1024;
const WARM_UP = 50;
const DIRECTORIES = 100;
const LARGE_FILES = 2;
const LARGE_SIZE = 64 * MIB;

const shardOf = (i: number) => `shard-${String(i % DIRECTORIES).padStart(3, '0')}`;
const smallFile = (i: number) => `${shardOf(i)}/item-${String(i).padStart(5, '0')}.bin`;

/** The tag as a tar: a directory entry per shard, the small files, then the large ones. */
function datasetTar(): Readable {
  const header = (path: string, size: number, type: 'File' | 'Directory') => {
    const block = Buffer.alloc(512);
    new Header({ path, mode: type === 'File' ? 0o644 : 0o755, size, mtime: new Date(0), type, uid: 0, gid: 0 }).encode(block, 0);
    return block;
  };
  const padding = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);
  async function* blocks(): AsyncGenerator<Buffer> {
    for (let d = 0; d < DIRECTORIES; d++) yield header(`${shardOf(d)}/`, 0, 'Directory');
    const bytes = generatedBytes(DATASET_FILES * 4000, 7)[Symbol.asyncIterator]();
    let pending = Buffer.alloc(0);
    for (let i = 0; i < DATASET_FILES; i++) {
      const size = 100 + ((i * 7919) % 3901);
      while (pending.length < size) pending = Buffer.concat([pending, (await bytes.next()).value as Buffer]);
      yield header(smallFile(i), size, 'File');
      yield pending.subarray(0, size);
      yield padding(size);
      pending = pending.subarray(size);
    }
    yield header('large/', 0, 'Directory');
    for (let i = 0; i < LARGE_FILES; i++) {
      yield header(`large/image-${i}.bin`, LARGE_SIZE, 'File');
      yield* generatedBytes(LARGE_SIZE, 20 + i);
    }
    yield Buffer.alloc(1024);
  }
  return Readable.from(blocks());
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

export interface ReadFigure {
  name: string;
  p50: number;
  p99: number;
  /** The server's CPU time a request, ms. */
  cpuMs: number;
}

/** `reads` requests of each kind (after a warm-up) against a fresh server of `cli` under `work`. */
export async function measureReadPath(work: string, cli: string, reads: number): Promise<{ figures: ReadFigure[]; peakRssMiB: number }> {
  const server = await startServerProcess(join(work, 'read-path'), {}, { cli });
  try {
    const alice = server.token('alice');
    const auth = { authorization: `Bearer ${alice}` };
    const created = await fetch(`${server.url}/api/v1/user/repos`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'data', visibility: 'private' }),
    });
    expect(created.status).toBe(201);
    const file = join(work, 'read-path.tar');
    await pipeline(datasetTar(), createWriteStream(file));
    const base = `${server.url}/api/v1/repos/alice/data/tags/v1`;
    execFileSync('curl', ['-sS', '-f', '-o', '/dev/null', '-T', file, '-H', `Authorization: Bearer ${alice}`, '-H', 'Content-Type: application/x-tar', `${base}/archive`]);
    await rm(file);
    server.resetPeakRss(); // the phase's peak is that of the reads, not of the push above

    /** Milliseconds per request, body read to its end; `check` sees the first answer. */
    const timed = async (name: string, url: (i: number) => string, headers: Record<string, string>, check: (res: Response, body: Buffer) => void): Promise<ReadFigure> => {
      const times: number[] = [];
      let cpuBefore = 0;
      for (let i = -WARM_UP; i < reads; i++) {
        if (i === 0) cpuBefore = server.cpuSeconds();
        const started = performance.now();
        const res = await fetch(url(i), { headers: { ...auth, ...headers } });
        const body = Buffer.from(await res.arrayBuffer());
        if (i < 0) {
          if (i === -WARM_UP) check(res, body);
          continue;
        }
        times.push(performance.now() - started);
      }
      return { name, p50: percentile(times, 50), p99: percentile(times, 99), cpuMs: ((server.cpuSeconds() - cpuBefore) * 1000) / reads };
    };
    const spread = (i: number) => ((i + WARM_UP) * 7919) % DATASET_FILES;
    const figures = [
      await timed('one small file', (i) => `${base}/files/${smallFile(spread(i))}`, {}, (res, body) => {
        expect(res.status).toBe(200);
        expect(body.length).toBe(100 + ((spread(-WARM_UP) * 7919) % 3901));
      }),
      await timed(
        'a 4 KiB range in the middle of a 64 MiB file',
        (i) => `${base}/files/large/image-${(i + WARM_UP) % LARGE_FILES}.bin`,
        { range: `bytes=${LARGE_SIZE / 2}-${LARGE_SIZE / 2 + 4095}` },
        (res, body) => {
          expect(res.status).toBe(206);
          expect(body.length).toBe(4096);
        },
      ),
      await timed('a listing of a directory of 200 files', (i) => `${base}/tree?path=${shardOf(spread(i))}`, {}, (res, body) => {
        expect(res.status).toBe(200);
        expect((JSON.parse(body.toString()) as unknown[]).length).toBe(DATASET_FILES / DIRECTORIES);
      }),
      await timed('a listing of the root (101 directories)', () => `${base}/tree`, {}, (res, body) => {
        expect(res.status).toBe(200);
        expect((JSON.parse(body.toString()) as unknown[]).length).toBe(DIRECTORIES + 1);
      }),
      // The floor every read above stands on: token, repository, tag and commit, no manifest.
      await timed('the tag alone (no entry read), the floor of every read', () => base, {}, (res) => expect(res.status).toBe(200)),
    ];
    return { figures, peakRssMiB: server.peakRssMiB() };
  } finally {
    await server.stop();
    await rm(join(work, 'read-path'), { recursive: true, force: true });
  }
}
