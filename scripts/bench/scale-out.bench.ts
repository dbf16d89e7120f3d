/**
 * Issue 13's figures: the same workload on the embedded stores (SQLite + local packs) and on
 * PostgreSQL + S3 (Ceph RGW), side by side in one run.
 *
 *   eval "$(scripts/dev/postgres.sh)"; eval "$(scripts/dev/s3.sh)"
 *   npm run build && npm run bench -- scripts/bench/scale-out.bench.ts
 *
 * Without the engines' variables only the embedded side runs (saying so). Each side is a real
 * server process (`node dist/cli/main.js serve`), on a fresh data directory and, for the
 * engines, a fresh database and a fresh key prefix of the bucket.
 *
 * 1. Push: a 1 GiB dataset of 20,000 files (incompressible), as one tar sent by curl to the
 *    HTTP tar push (its own process, so the figure is the server's); BENCH_PUSHES runs per side,
 *    the sides alternated, each run into a new repository.
 * 2. Fork latency: BENCH_FORKS forks of the pushed tag, one at a time, the sides alternated
 *    fork by fork; p50 and p99.
 * 3. Durable forks per second: BENCH_CONCURRENT_FORKS forks sent by 64 clients at once (each
 *    fork committed before its 201), twice per side alternated; forks/s and errors.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { expect, it } from 'vitest';
import { createTestDatabase, postgresUrl, type TestDatabase } from '../../test/support/postgres.js';
import { emptyPrefix, freshPrefix, rawClient, s3Config } from '../../test/support/s3.js';
import { median, startServerProcess, writeDataset } from './server-process.js';

const SIZE = Number(process.env.BENCH_BYTES ?? 1024 ** 3);
const PUSHES = Number(process.env.BENCH_PUSHES ?? 3);
const FORKS = Number(process.env.BENCH_FORKS ?? 200);
const CONCURRENT_FORKS = Number(process.env.BENCH_CONCURRENT_FORKS ?? 2000);
const CLIENTS = 64;

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

type Server = Awaited<ReturnType<typeof startServerProcess>>;

interface Side {
  name: string;
  server: Server;
  alice: string;
  bob: string;
  /** Frees what the side holds beyond its data directory (database, bucket prefix). */
  release(): Promise<void>;
}

async function startSide(name: string, dataDir: string, env: Record<string, string>, release: () => Promise<void>): Promise<Side> {
  const server = await startServerProcess(dataDir, env);
  return { name, server, alice: server.token('alice'), bob: server.token('bob'), release };
}

it.skipIf(!process.env.SNAPFORK_BENCH)('embedded stores against PostgreSQL + S3: push MB/s, fork latency, durable forks/s', async () => {
  const work = await mkdtemp(join(tmpdir(), 'snapfork-scale-bench-'));
  const sides: Side[] = [];
  try {
    sides.push(await startSide('SQLite + files', join(work, 'embedded'), {}, async () => undefined));
    if (postgresUrl && s3Config) {
      const database: TestDatabase = await createTestDatabase(postgresUrl);
      const client = rawClient(s3Config);
      const prefix = freshPrefix(s3Config, 'bench');
      const env = {
        SNAPFORK_DATABASE_URL: database.url,
        SNAPFORK_S3_ENDPOINT: s3Config.endpoint,
        SNAPFORK_S3_BUCKET: s3Config.bucket,
        SNAPFORK_S3_REGION: s3Config.region,
        SNAPFORK_S3_ACCESS_KEY_ID: s3Config.accessKeyId,
        SNAPFORK_S3_SECRET_ACCESS_KEY: s3Config.secretAccessKey,
        SNAPFORK_S3_FORCE_PATH_STYLE: String(s3Config.forcePathStyle),
        SNAPFORK_S3_PREFIX: prefix,
      };
      sides.push(
        await startSide('PostgreSQL + Ceph RGW', join(work, 'engines'), env, async () => {
          await emptyPrefix(client, s3Config!.bucket, prefix);
          client.destroy();
          await database.drop();
        }),
      );
    } else {
      console.log('PostgreSQL + S3 side skipped: set SNAPFORK_DATABASE_URL and SNAPFORK_S3_* (scripts/dev/postgres.sh, scripts/dev/s3.sh)');
    }
    const api = (side: Side, path: string, token: string, json?: unknown) =>
      fetch(side.server.url + path, {
        method: json === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      });

    const tar = join(work, 'dataset.tar');
    const bytes = await writeDataset(join(work, 'dataset'), SIZE);
    execFileSync('tar', ['-cf', tar, '-C', join(work, 'dataset'), '.']);
    await rm(join(work, 'dataset'), { recursive: true });
    const lines = [`machine: load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at start; dataset ${bytes} bytes in 20,000 files`];

    // 1. Push.
    const rates = new Map<Side, number[]>(sides.map((s) => [s, []]));
    for (let run = 0; run < PUSHES; run++) {
      for (const side of sides) {
        expect((await api(side, '/api/v1/user/repos', side.alice, { name: `data${run}`, visibility: 'public' })).status).toBe(201);
        const started = performance.now();
        const out = execFileSync('curl', ['-sS', '-f', '-T', tar, '-H', `Authorization: Bearer ${side.alice}`, '-H', 'Content-Type: application/x-tar', `${side.server.url}/api/v1/repos/alice/data${run}/tags/v1/archive`]);
        rates.get(side)!.push(bytes / 1e6 / ((performance.now() - started) / 1000));
        expect(JSON.parse(out.toString())).toMatchObject({ tag_name: 'v1' });
      }
    }
    lines.push('1. push of the 1 GiB dataset (curl -> HTTP tar push), MB/s:');
    for (const side of sides) lines.push(`   ${side.name}: median ${median(rates.get(side)!).toFixed(0)} [${rates.get(side)!.map((r) => r.toFixed(0)).join(', ')}]`);

    // 2. Fork latency, one at a time.
    let forked = 0;
    const fork = async (side: Side) => {
      const started = performance.now();
      const res = await api(side, '/api/v1/repositories/fork', side.bob, { source_org: 'alice', source_repo: 'data0', source_tag: 'v1', repo_name: `f${forked++}` });
      await res.arrayBuffer();
      return { ms: performance.now() - started, ok: res.status === 201 };
    };
    const latencies = new Map<Side, number[]>(sides.map((s) => [s, []]));
    for (let i = 0; i < FORKS; i++) {
      for (const side of sides) {
        const { ms, ok } = await fork(side);
        expect(ok).toBe(true);
        latencies.get(side)!.push(ms);
      }
    }
    lines.push(`2. fork latency over ${FORKS} forks, one at a time:`);
    for (const side of sides) {
      const xs = latencies.get(side)!;
      lines.push(`   ${side.name}: p50 ${percentile(xs, 50).toFixed(2)} ms, p99 ${percentile(xs, 99).toFixed(2)} ms`);
    }

    // 3. Durable forks per second with 64 clients.
    const throughput = new Map<Side, { perSecond: number; errors: number }[]>(sides.map((s) => [s, []]));
    for (let round = 0; round < 2; round++) {
      for (const side of sides) {
        let next = 0;
        let errors = 0;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            while (next++ < CONCURRENT_FORKS) if (!(await fork(side)).ok) errors++;
          }),
        );
        throughput.get(side)!.push({ perSecond: CONCURRENT_FORKS / ((performance.now() - started) / 1000), errors });
      }
    }
    lines.push(`3. durable forks per second, ${CONCURRENT_FORKS} forks from ${CLIENTS} clients at once (two rounds):`);
    for (const side of sides) {
      const rounds = throughput.get(side)!;
      lines.push(`   ${side.name}: ${rounds.map((r) => `${r.perSecond.toFixed(0)}/s (${r.errors} errors)`).join(', ')}`);
    }
    for (const side of sides) lines.push(`   ${side.name}: server peak RSS ${side.server.peakRssMiB().toFixed(0)} MiB`);
    console.log(lines.join('\n'));
  } finally {
    for (const side of sides) {
      await side.server.stop();
      await side.release();
    }
    await rm(work, { recursive: true, force: true });
  }
});
