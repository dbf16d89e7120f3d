/**
 * First-push throughput (issue 15), side by side with what users would otherwise pick: the
 * HTTP tar push and the CLI delta push, each into a fresh server, next to restic 0.14 (a fresh
 * repository), borg 1.2 (a fresh repository, `--compression zstd,3`, no encryption: its fastest)
 * and `tar | zstd -3 -T1` (to a file), on the same two data sets, in one sitting.
 *
 *   npm run build && npm run bench -- scripts/bench/throughput.bench.ts
 *
 * Data, made from a seed (no downloads) in a temporary directory:
 * - dataset: BENCH_BYTES (1 GiB by default) of ~20,000 files per GiB: binary blobs of 20-200 KiB
 *   (incompressible, as images are), CSV tables of 1-32 KiB and one large CSV (5%);
 * - VM image: a raw ext4 image of BENCH_BYTES made with `mke2fs -t ext4 -d` from this machine's
 *   /usr files (about 70% full).
 * Each figure is the median of BENCH_RUNS runs (5; 3 with BENCH_QUICK=1, which also makes the
 * data 256 MiB unless BENCH_BYTES says otherwise) with min and max; the tools take turns within
 * a run, so the machine's noise falls on all of them alike. MB/s are of the data's logical bytes.
 *
 * BENCH_CLI=dist-a/cli/main.js,dist/cli/main.js puts several builds of snapfork side by side
 * (A B A B in one sitting); BENCH_CPU_PROF=<dir> writes the servers' CPU profiles there
 * (`node --cpu-prof`), to see where a push spends its time.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { expect, it } from 'vitest';
import { CLI, ensureTool, median, startServerProcess } from './server-process.js';
import { seededRandom } from '../../test/support/seeded-random.js';

const QUICK = process.env.BENCH_QUICK === '1';
const SIZE = Number(process.env.BENCH_BYTES ?? (QUICK ? 256 : 1024) * 1024 ** 2);
const RUNS = Number(process.env.BENCH_RUNS ?? (QUICK ? 3 : 5));
const BUILDS = (process.env.BENCH_CLI ?? CLI).split(',');
const CPU_PROF = process.env.BENCH_CPU_PROF;

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliett', 'kilo', 'lima'];

/** `size` bytes of a CSV table: an id, a timestamp, a label and two measures per row. */
function csvTable(size: number, next: () => number, firstId: number): Buffer {
  const rows = ['id,timestamp,label,value,score\n'];
  let length = rows[0]!.length;
  for (let id = firstId; length < size; id++) {
    const row = `${id},${1_700_000_000 + Math.floor(next() * 1e7)},${WORDS[Math.floor(next() * WORDS.length)]},${(next() * 1000).toFixed(3)},${Math.floor(next() * 100)}\n`;
    rows.push(row);
    length += row.length;
  }
  return Buffer.from(rows.join('')).subarray(0, size);
}

/** The dataset described above, under `dir`; answers its bytes and files. */
async function writeDataset(dir: string, size: number): Promise<{ bytes: number; files: number }> {
  const next = seededRandom(15);
  const blobs = createCipheriv('aes-128-ctr', Buffer.alloc(16, 15), Buffer.alloc(16));
  const large = Math.floor(size * 0.05);
  await mkdir(join(dir, 'tables'), { recursive: true });
  await writeFile(join(dir, 'tables', 'events.csv'), csvTable(large, next, 0));
  let bytes = large;
  let files = 1;
  // 40% blobs (mean 110 KiB), 60% tables (mean 16.5 KiB): ~20,000 files per GiB.
  while (bytes < size) {
    const blob = next() < 0.4;
    const fileSize = Math.min(size - bytes, Math.floor(blob ? 20_480 + next() * 184_320 : 1024 + next() * 31_744));
    const shard = join(dir, `shard-${String(Math.floor(files / 200)).padStart(3, '0')}`);
    if (files % 200 === 0 || files === 1) await mkdir(shard, { recursive: true });
    const name = join(shard, `item-${String(files).padStart(5, '0')}.${blob ? 'bin' : 'csv'}`);
    await writeFile(name, blob ? blobs.update(Buffer.alloc(fileSize)) : csvTable(fileSize, next, files * 1000));
    bytes += fileSize;
    files++;
  }
  return { bytes, files };
}

/**
 * A raw ext4 image of `size` bytes holding this machine's /usr files (walked in name order)
 * up to 70% of it, made with mke2fs -d from a copy of them under `staging`.
 */
async function writeVmImage(image: string, staging: string, size: number): Promise<void> {
  let budget = Math.floor(size * 0.7);
  const walk = async (dir: string): Promise<void> => {
    const names = (await readdir(dir, { withFileTypes: true }).catch(() => [])).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of names) {
      if (budget <= 0) return;
      const path = join(dir, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.isFile()) {
        const { size: fileSize } = await stat(path);
        if (fileSize > budget) continue;
        const target = join(staging, relative('/', path));
        await mkdir(dirname(target), { recursive: true });
        await copyFile(path, target);
        budget -= fileSize;
      }
    }
  };
  await walk('/usr');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', staging, image, `${size / 1024}k`]);
}

interface DataSet {
  name: string;
  /** The directory pushed and backed up. */
  dir: string;
  /** A tar of `dir`, for the HTTP push and tar | zstd. */
  tar: string;
  /** Logical bytes: what MB/s are of. */
  bytes: number;
}

/** Seconds `work` takes. */
async function timed(work: () => unknown): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

it.skipIf(!process.env.SNAPFORK_BENCH)('first push MB/s through HTTP and the CLI, beside restic, borg and tar | zstd', async () => {
  for (const build of BUILDS) expect(existsSync(build), `run npm run build first (${build})`).toBe(true);
  ensureTool('restic', ['restic', 'version']);
  ensureTool('borgbackup', ['borg', '--version']);
  const work = await mkdtemp(join(tmpdir(), 'snapfork-throughput-bench-'));
  const exec = (command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) =>
    execFileSync(command, args, { maxBuffer: 256 * 1024 * 1024, ...options, env: { ...process.env, ...options.env } });
  /** A fresh server of `build`, given to `use`, then stopped with its data removed; answers its peak RSS. */
  const withServer = async (build: string, use: (server: Awaited<ReturnType<typeof startServerProcess>>) => Promise<void>) => {
    const dataDir = join(work, 'server');
    const server = await startServerProcess(dataDir, {}, { cli: build, nodeArgs: CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [] });
    try {
      await use(server);
      return server.peakRssMiB();
    } finally {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  };
  const peakRss = new Map<string, number>();
  const notePeak = (label: string, rss: number) => peakRss.set(label, Math.max(peakRss.get(label) ?? 0, rss));

  /** Each tool's first push of `data`: seconds. */
  const tools: { label: string; run: (data: DataSet) => Promise<number> }[] = [
    ...BUILDS.flatMap((build) => [
      {
        label: `snapfork HTTP tar push${BUILDS.length > 1 ? ` (${build})` : ''}`,
        run: async (data: DataSet) => {
          let seconds = 0;
          const label = `HTTP ${data.name} ${build}`;
          notePeak(label, await withServer(build, async (server) => {
            const token = server.token('alice');
            const created = await fetch(`${server.url}/api/v1/user/repos`, {
              method: 'POST',
              headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
              body: JSON.stringify({ name: 'bench', visibility: 'private' }),
            });
            expect(created.status).toBe(201);
            const url = `${server.url}/api/v1/repos/alice/bench/tags/v1/archive`;
            seconds = await timed(() => exec('curl', ['-sS', '-f', '-o', '/dev/null', '-T', data.tar, '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/x-tar', url]));
          }));
          return seconds;
        },
      },
      {
        label: `snapfork CLI push${BUILDS.length > 1 ? ` (${build})` : ''}`,
        run: async (data: DataSet) => {
          let seconds = 0;
          notePeak(`CLI ${data.name} ${build}`, await withServer(build, async (server) => {
            const env = { SNAPFORK_URL: server.url, SNAPFORK_TOKEN: server.token('alice') };
            seconds = await timed(() => exec(process.execPath, [build, 'push', data.dir, 'alice/bench:v1', '--json'], { env }));
          }));
          return seconds;
        },
      },
    ]),
    {
      label: 'restic 0.14',
      run: async (data) => {
        const env = { RESTIC_REPOSITORY: join(work, 'restic'), RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(work, 'restic-cache') };
        exec('restic', ['init', '-q'], { env });
        try {
          return await timed(() => exec('restic', ['backup', '-q', '.'], { env, cwd: data.dir }));
        } finally {
          await rm(env.RESTIC_REPOSITORY, { recursive: true, force: true });
          await rm(env.RESTIC_CACHE_DIR, { recursive: true, force: true });
        }
      },
    },
    {
      label: 'borg 1.2 (zstd,3)',
      run: async (data) => {
        const env = { BORG_BASE_DIR: join(work, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes' };
        const repo = join(work, 'borg');
        exec('borg', ['init', '--encryption=none', repo], { env });
        try {
          return await timed(() => exec('borg', ['create', '--compression', 'zstd,3', `${repo}::first`, '.'], { env, cwd: data.dir }));
        } finally {
          await rm(repo, { recursive: true, force: true });
          await rm(env.BORG_BASE_DIR, { recursive: true, force: true });
        }
      },
    },
    {
      label: 'tar \\| zstd -3 -T1',
      run: async (data) => {
        const out = join(work, 'out.tar.zst');
        try {
          return await timed(() => exec('sh', ['-c', `tar -cf - -C "${data.dir}" . | zstd -q -3 -T1 -f -o "${out}"`]));
        } finally {
          await rm(out, { force: true });
        }
      },
    },
  ];

  try {
    const datasetDir = join(work, 'dataset');
    const dataset = await writeDataset(datasetDir, SIZE);
    const imageDir = join(work, 'image');
    await mkdir(imageDir);
    await writeVmImage(join(imageDir, 'disk.img'), join(work, 'usr-copy'), SIZE);
    await rm(join(work, 'usr-copy'), { recursive: true });
    const sets: DataSet[] = [
      { name: 'dataset', dir: datasetDir, tar: join(work, 'dataset.tar'), bytes: dataset.bytes },
      { name: 'VM image', dir: imageDir, tar: join(work, 'image.tar'), bytes: SIZE },
    ];
    for (const set of sets) exec('tar', ['-cf', set.tar, '-C', set.dir, '.']);
    console.log(`data: dataset ${(dataset.bytes / 1e6).toFixed(0)} MB in ${dataset.files} files; VM image ${(SIZE / 1e6).toFixed(0)} MB (ext4, /usr files)`);

    // A warm-up round (page cache, JIT, apt-installed binaries), then the measured runs.
    const rates = new Map<string, number[]>();
    for (let run = 0; run <= RUNS; run++) {
      for (const set of sets) {
        for (const tool of tools) {
          const seconds = await tool.run(set);
          if (run > 0) rates.set(`${set.name}|${tool.label}`, [...(rates.get(`${set.name}|${tool.label}`) ?? []), set.bytes / 1e6 / seconds]);
        }
      }
    }

    const figure = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
    const lines = [`first push MB/s, median (min-max) of ${RUNS} runs, ${new Date().toISOString()}`, `| tool | ${sets.map((s) => s.name).join(' | ')} |`, `| --- |${sets.map(() => ' --- |').join('')}`];
    for (const tool of tools) lines.push(`| ${tool.label} | ${sets.map((s) => figure(rates.get(`${s.name}|${tool.label}`)!)).join(' | ')} |`);
    const best = (set: DataSet) => Math.max(median(rates.get(`${set.name}|restic 0.14`)!), median(rates.get(`${set.name}|borg 1.2 (zstd,3)`)!));
    for (const tool of tools.filter((t) => t.label.startsWith('snapfork'))) {
      lines.push(`| ${tool.label} / faster of restic and borg (goal ≥ 1.20) | ${sets.map((s) => (median(rates.get(`${s.name}|${tool.label}`)!) / best(s)).toFixed(2)).join(' | ')} |`);
    }
    lines.push('', `server peak RSS (MiB): ${[...peakRss].map(([label, rss]) => `${label} ${rss.toFixed(0)}`).join('; ')}`);
    console.log(lines.join('\n'));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
