/**
 * Push throughput and fork latency, over real HTTP against a real server.
 *
 *   npm run bench -- scripts/bench/push-fork.bench.ts
 *
 * Pushes a 1 GiB generated (incompressible, all-distinct) image REPEAT times and reports the
 * median MB/s; then forks a 1 KiB and a 1 GiB snapshot alternately, FORKS times each, and
 * reports median latencies and their ratio, measured side by side in one run.
 */
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { generatedTar } from '../../test/support/generated.js';
import { startTestServer } from '../../test/support/server.js';

const GIB = 1024 ** 3;
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const FORKS = Number(process.env.BENCH_FORKS ?? 25);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

describe.skipIf(!process.env.SNAPFORK_BENCH)('push and fork', () => {
  it('measures push MB/s for 1 GiB and fork latency for 1 KiB and 1 GiB sources', async () => {
    const s = await startTestServer();
    try {
      const alice = await s.token('alice');
      const bob = await s.token('bob');
      const push = async (repo: string, size: number, seed: number) => {
        await s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: repo, visibility: 'public' } });
        const started = performance.now();
        const res = await s.api(`/api/v1/repos/alice/${repo}/tags/v1/archive`, {
          method: 'PUT', token: alice, body: generatedTar('disk.img', size, seed), headers: { 'content-type': 'application/x-tar' },
        });
        expect(res.status).toBe(201);
        await res.json();
        return performance.now() - started;
      };

      const pushMBs: number[] = [];
      for (let i = 0; i < REPEAT; i++) pushMBs.push(GIB / 1e6 / ((await push(`big${i}`, GIB, 10 + i)) / 1000));
      await push('small', 1024, 1);

      const fork = async (repo: string, name: string) => {
        const started = performance.now();
        const res = await s.api('/api/v1/repositories/fork', {
          method: 'POST', token: bob, json: { source_org: 'alice', source_repo: repo, source_tag: 'v1', repo_name: name },
        });
        expect(res.status).toBe(201);
        await res.json();
        return performance.now() - started;
      };
      const small: number[] = [];
      const big: number[] = [];
      for (let i = 0; i < FORKS; i++) {
        small.push(await fork('small', `s${i}`));
        big.push(await fork('big0', `b${i}`));
      }
      console.log(
        [
          `push 1 GiB: median ${median(pushMBs).toFixed(0)} MB/s over ${REPEAT} runs (${pushMBs.map((x) => x.toFixed(0)).join(', ')})`,
          `fork 1 KiB source: median ${median(small).toFixed(2)} ms over ${FORKS}`,
          `fork 1 GiB source: median ${median(big).toFixed(2)} ms over ${FORKS}`,
          `ratio 1 GiB / 1 KiB: ${(median(big) / median(small)).toFixed(2)}`,
        ].join('\n'),
      );
    } finally {
      await s.stop();
    }
  });
});
