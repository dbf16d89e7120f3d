/**
 * Fork figures (issue 15) on one fresh server: single forks of a 1 KiB tag and of the data
 * set's tag, alternated, for p50/p99 at both sizes; then rounds of durable forks sent by 64
 * clients at once (each fork committed before its 201), for forks/s, errors and peak RSS.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { exec, withServer } from './tools.js';

const CLIENTS = 64;

export interface ForkFigures {
  smallMs: number[];
  largeMs: number[];
  /** One forks/s per round. */
  perSecond: number[];
  errors: number;
  peakRssMiB: number;
}

export async function measureForks(
  work: string,
  cli: string,
  largeTar: string,
  { single, concurrent, rounds }: { single: number; concurrent: number; rounds: number },
): Promise<ForkFigures> {
  const figures: ForkFigures = { smallMs: [], largeMs: [], perSecond: [], errors: 0, peakRssMiB: 0 };
  await withServer(work, cli, [], async (server) => {
    const alice = server.token('alice');
    const bob = server.token('bob');
    const post = (path: string, token: string, json: unknown) =>
      fetch(server.url + path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(json) });
    const smallDir = join(work, 'small');
    exec('mkdir', ['-p', smallDir]);
    await writeFile(join(smallDir, 'small.bin'), Buffer.alloc(1024, 7));
    const smallTar = join(work, 'small.tar');
    exec('tar', ['-cf', smallTar, '-C', smallDir, '.']);
    for (const [repo, tar] of [['small', smallTar], ['large', largeTar]] as const) {
      const created = await post('/api/v1/user/repos', alice, { name: repo, visibility: 'public' });
      if (created.status !== 201) throw new Error(`creating ${repo} answered ${created.status}`);
      exec('curl', ['-sS', '-f', '-o', '/dev/null', '-T', tar, '-H', `Authorization: Bearer ${alice}`, '-H', 'Content-Type: application/x-tar', `${server.url}/api/v1/repos/alice/${repo}/tags/v1/archive`]);
    }
    let forked = 0;
    /** A Vers fork of alice/`repo`:v1: milliseconds, and whether it answered 201. */
    const fork = async (repo: string) => {
      const started = performance.now();
      const res = await post('/api/v1/repositories/fork', bob, { source_org: 'alice', source_repo: repo, source_tag: 'v1', repo_name: `f${forked++}` });
      await res.arrayBuffer();
      return { ms: performance.now() - started, ok: res.status === 201 };
    };
    for (let i = 0; i < single; i++) {
      for (const [repo, times] of [['small', figures.smallMs], ['large', figures.largeMs]] as const) {
        const { ms, ok } = await fork(repo);
        if (!ok) figures.errors++;
        times.push(ms);
      }
    }
    server.resetPeakRss();
    for (let round = 0; round < rounds; round++) {
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          while (next++ < concurrent) if (!(await fork('large')).ok) figures.errors++;
        }),
      );
      figures.perSecond.push(concurrent / ((performance.now() - started) / 1000));
    }
    figures.peakRssMiB = server.peakRssMiB();
  });
  return figures;
}
