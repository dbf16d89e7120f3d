/**
 * Push throughput and fork latency of a real server in its own process.
 *
 *   npm run build && npm run bench -- scripts/bench/push-fork.bench.ts
 *
 * The server runs as `node dist/cli/main.js serve` on a temporary data directory; pushes are
 * sent by curl (its own process, streaming a 1 GiB tar of incompressible, all-distinct data from
 * disk), so the figure is the server's. Then 1 KiB and 1 GiB snapshots are forked alternately,
 * side by side in one run, and the medians and their ratio are printed.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { expect, it } from 'vitest';
import { generatedTar } from '../../test/support/generated.js';
import { median, startServerProcess } from './server-process.js';

const GIB = 1024 ** 3;
const PUSHES = Number(process.env.BENCH_PUSHES ?? 3);
const FORKS = Number(process.env.BENCH_FORKS ?? 25);

it.skipIf(!process.env.SNAPFORK_BENCH)('push MB/s for 1 GiB, fork latency for 1 KiB and 1 GiB sources', async () => {
  const work = await mkdtemp(join(tmpdir(), 'snapfork-bench-'));
  const server = await startServerProcess(join(work, 'data'));
  try {
    const alice = server.token('alice');
    const bob = server.token('bob');
    const api = (path: string, tokenValue: string, json?: unknown) =>
      fetch(server.url + path, {
        method: json === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${tokenValue}`, 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
    const curlPush = (repo: string, file: string) => {
      const started = performance.now();
      const out = execFileSync('curl', ['-sS', '-f', '-T', file, '-H', `Authorization: Bearer ${alice}`, '-H', 'Content-Type: application/x-tar', `${server.url}/api/v1/repos/alice/${repo}/tags/v1/archive`]);
      const seconds = (performance.now() - started) / 1000;
      expect(JSON.parse(out.toString())).toMatchObject({ tag_name: 'v1' });
      return seconds;
    };

    const rates: number[] = [];
    for (let i = 0; i < PUSHES; i++) {
      const file = join(work, `image-${i}.tar`);
      await pipeline(generatedTar('disk.img', GIB, 10 + i), createWriteStream(file));
      expect((await api('/api/v1/user/repos', alice, { name: `big${i}`, visibility: 'public' })).status).toBe(201);
      rates.push(GIB / 1e6 / curlPush(`big${i}`, file));
      await rm(file);
    }
    const small = join(work, 'small.tar');
    await pipeline(generatedTar('small.bin', 1024, 1), createWriteStream(small));
    await api('/api/v1/user/repos', alice, { name: 'small', visibility: 'public' });
    curlPush('small', small);

    const fork = async (repo: string, name: string) => {
      const started = performance.now();
      const res = await api('/api/v1/repositories/fork', bob, { source_org: 'alice', source_repo: repo, source_tag: 'v1', repo_name: name });
      expect(res.status).toBe(201);
      await res.json();
      return performance.now() - started;
    };
    const smallForks: number[] = [];
    const bigForks: number[] = [];
    for (let i = 0; i < FORKS; i++) {
      smallForks.push(await fork('small', `s${i}`));
      bigForks.push(await fork('big0', `b${i}`));
    }
    console.log(
      [
        `push 1 GiB (curl -> server process): median ${median(rates).toFixed(0)} MB/s over ${PUSHES} runs [${rates.map((r) => r.toFixed(0)).join(', ')}]`,
        `server peak RSS after the pushes: ${server.peakRssMiB().toFixed(0)} MiB`,
        `fork of a 1 KiB source: median ${median(smallForks).toFixed(2)} ms over ${FORKS}`,
        `fork of a 1 GiB source: median ${median(bigForks).toFixed(2)} ms over ${FORKS}`,
        `ratio 1 GiB / 1 KiB: ${(median(bigForks) / median(smallForks)).toFixed(2)}`,
      ].join('\n'),
    );
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
});
