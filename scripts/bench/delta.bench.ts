/**
 * Delta push and pull (issue 7): bytes sent, stored and fetched for a 1 GiB disk image and a
 * 1 GiB dataset of 20,000 files, pushed, pushed again unchanged, changed a little and pushed,
 * then pulled into the directory of the old version; restic's "Added to the repository" for the
 * same changes beside them.
 *
 *   npm run build && npm run bench -- scripts/bench/delta.bench.ts
 *
 * The server runs as `node dist/cli/main.js serve` and every push and pull as its own
 * `node dist/cli/main.js ... --json` process, so the figures are those of the real CLI over
 * HTTP. "stored" is the growth of the chunk store's pack files. restic is Debian's package,
 * installed with apt-get when missing, backing up to a local repository in the same temp dir.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { expect, it } from 'vitest';
import { generatedBytes } from '../../test/support/generated.js';
import { DATASET_FILES, datasetFile, ensureTool, startServerProcess, writeDataset } from './server-process.js';

/** Bytes of the image and of the dataset: 1 GiB; BENCH_BYTES=33554432 tries the script quickly. */
const SIZE = Number(process.env.BENCH_BYTES ?? 1024 ** 3);

interface Row {
  step: string;
  base: number;
  moved: number | null;
  stored: number | null;
  restic: number | null;
  seconds: number;
}

async function writeGenerated(file: string, size: number, seed: number): Promise<void> {
  const out = await open(file, 'w');
  for await (const piece of generatedBytes(size, seed)) await out.write(piece);
  await out.close();
}


/** Bytes of every file below `dir`. */
async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  }
  return n;
}

/** A restic repository; backup() answers "Added to the repository" (data_added) in bytes. */
function resticRepo(path: string) {
  const env = { ...process.env, RESTIC_REPOSITORY: path, RESTIC_PASSWORD: 'bench' };
  execFileSync('restic', ['init'], { env, stdio: 'ignore' });
  return {
    backup(dir: string): number {
      const out = execFileSync('restic', ['backup', '--json', '.'], { env, cwd: dir, maxBuffer: 256 * 1024 * 1024 }).toString();
      const summary = out
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { message_type?: string; data_added?: number })
        .find((m) => m.message_type === 'summary');
      if (summary?.data_added === undefined) throw new Error(`no restic summary in: ${out.slice(-500)}`);
      return summary.data_added;
    },
  };
}

it.skipIf(!process.env.SNAPFORK_BENCH)('delta push and pull of a 1 GiB image and a 1 GiB dataset, beside restic', async () => {
  expect(existsSync('dist/cli/main.js'), 'run npm run build first').toBe(true);
  ensureTool('restic', ['restic', 'version']);
  const work = await mkdtemp(join(tmpdir(), 'snapfork-delta-bench-'));
  const dataDir = join(work, 'data');
  const server = await startServerProcess(dataDir);
  const env = { ...process.env, SNAPFORK_URL: server.url, SNAPFORK_TOKEN: server.token('alice') };
  const rows: Row[] = [];
  const cli = (...args: string[]) => {
    const started = performance.now();
    const out = execFileSync(process.execPath, ['dist/cli/main.js', ...args, '--json'], { env, maxBuffer: 64 * 1024 * 1024 });
    return { result: JSON.parse(out.toString()) as Record<string, number>, seconds: (performance.now() - started) / 1000 };
  };
  const packs = () => treeBytes(join(dataDir, 'chunks', 'packs'));
  const push = async (step: string, dir: string, ref: string, base: number, restic: ReturnType<typeof resticRepo>) => {
    const before = await packs();
    const { result, seconds } = cli('push', dir, ref);
    expect(result.bytes_hashed).toBe(base);
    rows.push({ step, base, moved: result.bytes_sent!, stored: (await packs()) - before, restic: restic.backup(dir), seconds });
  };
  const pull = (step: string, ref: string, dir: string, base: number) => {
    const { result, seconds } = cli('pull', ref, dir);
    expect(result.bytes).toBe(base);
    rows.push({ step, base, moved: result.bytes_fetched!, stored: null, restic: null, seconds });
  };
  try {
    // A disk image: 1 GiB of incompressible keystream, then 1% of it rewritten in ten places.
    const image = join(work, 'image');
    await mkdir(image);
    await writeGenerated(join(image, 'disk.img'), SIZE, 1);
    const imageRestic = resticRepo(join(work, 'restic-image'));
    await push('image: first push', image, 'alice/image:v1', SIZE, imageRestic);
    await push('image: push again, unchanged', image, 'alice/image:v1', SIZE, imageRestic);
    const disk = await open(join(image, 'disk.img'), 'r+');
    const place = Math.floor(SIZE / 100 / 10);
    for (let i = 0; i < 10; i++) await disk.write(randomBytes(place), 0, place, Math.floor((i + 0.5) * (SIZE / 10)));
    await disk.close();
    await push('image: 1% changed in 10 places', image, 'alice/image:v2', SIZE, imageRestic);
    const imageCopy = join(work, 'image-pulled');
    pull('image: pull v1 into an empty dir', 'alice/image:v1', imageCopy, SIZE);
    pull('image: pull v2 into the v1 dir', 'alice/image:v2', imageCopy, SIZE);

    // A dataset: 20,000 files, then 2% of them (every 50th) rewritten.
    const dataset = join(work, 'dataset');
    const total = await writeDataset(dataset, SIZE);
    const datasetRestic = resticRepo(join(work, 'restic-dataset'));
    await push('dataset: first push', dataset, 'alice/dataset:v1', total, datasetRestic);
    await push('dataset: push again, unchanged', dataset, 'alice/dataset:v1', total, datasetRestic);
    for (let i = 0; i < DATASET_FILES; i += 50) {
      const file = datasetFile(dataset, i);
      await writeFile(file, randomBytes((await stat(file)).size));
    }
    await push('dataset: 2% of files changed', dataset, 'alice/dataset:v2', total, datasetRestic);
    const datasetCopy = join(work, 'dataset-pulled');
    pull('dataset: pull v1 into an empty dir', 'alice/dataset:v1', datasetCopy, total);
    pull('dataset: pull v2 into the v1 dir', 'alice/dataset:v2', datasetCopy, total);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }

  const pct = (n: number | null, base: number) => (n === null ? '-' : `${(n / 1e6).toFixed(1)} MB (${((100 * n) / base).toFixed(2)}%)`);
  const header = ['step', 'snapfork sent/fetched', 'snapfork stored', 'restic added', 'seconds'];
  const table = [header, ...rows.map((r) => [r.step, pct(r.moved, r.base), pct(r.stored, r.base), pct(r.restic, r.base), r.seconds.toFixed(1)])];
  console.log(table.map((cells) => `| ${cells.join(' | ')} |`).join('\n'));

  const share = (step: string) => {
    const row = rows.find((r) => r.step === step)!;
    return { moved: row.moved! / row.base, stored: (row.stored ?? 0) / row.base };
  };
  expect(share('image: push again, unchanged').moved).toBeLessThan(0.01);
  expect(share('dataset: push again, unchanged').moved).toBeLessThan(0.01);
  expect(share('image: 1% changed in 10 places').moved).toBeLessThan(0.03);
  expect(share('image: 1% changed in 10 places').stored).toBeLessThan(0.03);
  expect(share('image: pull v2 into the v1 dir').moved).toBeLessThan(0.03);
  expect(share('dataset: 2% of files changed').moved).toBeLessThan(0.05);
  expect(share('dataset: 2% of files changed').stored).toBeLessThan(0.05);
  expect(share('dataset: pull v2 into the v1 dir').moved).toBeLessThan(0.05);
});
