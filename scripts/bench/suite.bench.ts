/**
 * Issue 15's performance suite: every figure of its table, side by side with restic, borg
 * (`--compression zstd,3`, no encryption) and `tar | zstd -3 -T1`, and this machine's limits,
 * in one sitting, written to scripts/bench/results.md (results-quick.md for a quick run).
 *
 *   npm run bench                # 1 GiB data sets, 5 runs after a warm-up
 *   npm run bench -- --quick     # 128 MiB, 3 runs: under 10 minutes
 *
 * Data (scripts/bench/suite/data.ts) is made from a seed. Each run, each tool takes its turn on
 * each data set (A B C A B C), so the machine's noise falls on all of them alike: snapfork's HTTP
 * tar push (first push, the same again as a full read, v2, export as tar) and CLI delta push and
 * fresh pull, each into a fresh server process; restic (backup, backup --force, v2, restore);
 * borg (create, create without the files cache, v2, extract); tar | zstd (and zstd -d). Then the
 * read path (scripts/bench/suite/read-path.ts) and forks (suite/forks.ts) on fresh servers.
 *
 * BENCH_BYTES and BENCH_RUNS override the size and the runs; BENCH_CLI=dist-a/cli/main.js,
 * dist/cli/main.js puts builds side by side (A/B in one sitting); BENCH_CPU_PROF=<dir> writes
 * the push servers' CPU profiles there (`node --cpu-prof`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CLI, ensureTool } from './server-process.js';
import { changeDataset, changeVmImage, writeDataset, writeVmImage } from './suite/data.js';
import { measureForks } from './suite/forks.js';
import { measureLimits } from './suite/limits.js';
import { measureReadPath } from './suite/read-path.js';
import { renderResults, Samples, TOOLS, type Build } from './suite/report.js';
import { borg, exec, restic, snapforkCli, snapforkHttp, tarZstd, type DataSet, type Phase, type Tool } from './suite/tools.js';

const QUICK = process.env.BENCH_QUICK === '1';
const SIZE = Number(process.env.BENCH_BYTES ?? (QUICK ? 128 : 1024) * 1024 ** 2);
const RUNS = Number(process.env.BENCH_RUNS ?? (QUICK ? 3 : 5));
const CLIS = (process.env.BENCH_CLI ?? CLI).split(',');
const CPU_PROF = process.env.BENCH_CPU_PROF;
const OUT = join('scripts', 'bench', QUICK ? 'results-quick.md' : 'results.md');

it.skipIf(!process.env.SNAPFORK_BENCH)(`issue 15's figures beside restic, borg and tar | zstd (${QUICK ? 'quick' : 'full'})`, async () => {
  for (const cli of CLIS) expect(existsSync(cli), `run npm run build first (${cli})`).toBe(true);
  ensureTool('restic', ['restic', 'version']);
  ensureTool('borgbackup', ['borg', '--version']);
  ensureTool('zstd', ['zstd', '--version']);
  const started = new Date();
  const loadAtStart = loadavg();
  const work = await mkdtemp(join(tmpdir(), 'snapfork-suite-'));
  try {
    console.log(`making the data sets (${(SIZE / 1024 ** 2).toFixed(0)} MiB each) in ${work}`);
    const dataset = await writeDataset(join(work, 'dataset'), SIZE);
    exec('cp', ['-a', join(work, 'dataset'), join(work, 'dataset-v2')]);
    await changeDataset(join(work, 'dataset-v2'));
    await writeVmImage(join(work, 'image', 'disk.img'), join(work, 'usr-copy'), SIZE);
    exec('cp', ['-a', join(work, 'image'), join(work, 'image-v2')]);
    await changeVmImage(join(work, 'image-v2', 'disk.img'));
    const sets: DataSet[] = [
      { name: 'dataset', v1: join(work, 'dataset'), v1Tar: join(work, 'dataset.tar'), v2: join(work, 'dataset-v2'), v2Tar: join(work, 'dataset-v2.tar'), bytes: dataset.bytes },
      { name: 'VM image', v1: join(work, 'image'), v1Tar: join(work, 'image.tar'), v2: join(work, 'image-v2'), v2Tar: join(work, 'image-v2.tar'), bytes: SIZE },
    ];
    for (const set of sets) {
      exec('tar', ['-cf', set.v1Tar, '-C', set.v1, '.']);
      exec('tar', ['-cf', set.v2Tar, '-C', set.v2, '.']);
    }

    const builds: Build[] = CLIS.map((cli) => {
      const label = CLIS.length > 1 ? `snapfork (${cli})` : 'snapfork';
      return { label, http: `${label} HTTP`, cli: `${label} CLI` };
    });
    const nodeArgs = CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [];
    const tools: Tool[] = [
      ...CLIS.flatMap((cli, i) => [snapforkHttp(cli, builds[i]!.http, nodeArgs), snapforkCli(cli, builds[i]!.cli, nodeArgs)]),
      restic,
      borg,
      tarZstd,
    ];
    const samples = new Samples();
    const peakRss = new Map<Phase | 'reads', number>();
    const notePeak = (phase: Phase | 'reads', mib: number) => peakRss.set(phase, Math.max(peakRss.get(phase) ?? 0, mib));
    const limits = new Map<string, number[]>();
    const trialDir = join(work, 'trial');

    // A warm-up round (the data in the page cache, the tools' binaries and caches: each tool
    // once, on the first data set, which the full run's hour can spare), then the measured runs.
    for (let run = 0; run <= RUNS; run++) {
      console.log(run === 0 ? 'warm-up round' : `run ${run}/${RUNS}`);
      for (const set of run === 0 ? sets.slice(0, 1) : sets) {
        for (const tool of tools) {
          await mkdir(trialDir, { recursive: true });
          await tool.run(set, {
            work: trialDir,
            record: (figure, value) => run > 0 && samples.add(tool.label, set.name, figure, value),
            peakRss: (phase, mib) => run > 0 && notePeak(phase, mib),
          });
          await rm(trialDir, { recursive: true, force: true });
        }
      }
      if (run > 0) {
        await mkdir(trialDir, { recursive: true });
        for (const [name, value] of await measureLimits(trialDir, sets, SIZE)) limits.set(name, [...(limits.get(name) ?? []), value]);
        await rm(trialDir, { recursive: true, force: true });
      }
    }

    console.log('read path');
    const readPath = await measureReadPath(work, CLIS[0]!, QUICK ? 200 : 500);
    notePeak('reads', readPath.peakRssMiB);
    console.log('forks');
    await mkdir(trialDir, { recursive: true });
    const forks = await measureForks(trialDir, CLIS[0]!, sets[0]!.v1Tar, QUICK ? { single: 100, concurrent: 1000, rounds: 3 } : { single: 200, concurrent: 2000, rounds: 5 });
    notePeak('64-client forks', forks.peakRssMiB);

    const version = (command: string[]) => /(\d+\.\d+(\.\d+)?)/.exec(execFileSync(command[0]!, command.slice(1)).toString())?.[1] ?? '?';
    const seconds = Math.round((Date.now() - started.getTime()) / 1000);
    const header = [
      `# snapfork performance: ${QUICK ? 'quick run' : 'full run'} of \`npm run bench${QUICK ? ' -- --quick' : ''}\``,
      '',
      `- When: ${started.toISOString()}, ${seconds} s, commit ${execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim()}`,
      `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}; load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`,
      `- Data: dataset ${(dataset.bytes / 1e6).toFixed(0)} MB in ${dataset.files} files; VM image ${(SIZE / 1e6).toFixed(0)} MB (ext4 of /usr files); v2 of each as issue 15 says`,
      `- ${RUNS} runs after a warm-up, the tools taking turns within each run; MB/s are of the data's logical bytes`,
    ];
    const markdown = renderResults({ header, sets, builds, samples, versions: { restic: version(['restic', 'version']), borg: version(['borg', '--version']) }, reads: readPath.figures, forks, peakRss, limits });
    await writeFile(OUT, markdown);
    console.log(`${markdown}\n(written to ${OUT})`);
    expect(samples.get(TOOLS.restic, 'dataset', 'first push')).toHaveLength(RUNS);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
