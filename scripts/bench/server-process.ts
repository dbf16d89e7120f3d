/** What the benchmarks share: a real server in its own process, tokens for it, medians, data. */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { withoutEngines } from '../../test/support/engines.js';
import { generatedBytes } from '../../test/support/generated.js';

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The built CLI the benchmarks run (`npm run build` first). */
export const CLI = 'dist/cli/main.js';

/**
 * A Debian package the benchmark compares against, installed with apt-get when `probe` (a
 * command and its arguments, e.g. `restic version`) fails; the package lists are refreshed
 * only when the install fails without.
 */
export function ensureTool(debPackage: string, [command, ...args]: readonly [string, ...string[]]): void {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
  } catch {
    execFileSync('sh', ['-c', `apt-get install -y ${debPackage} || (apt-get update && apt-get install -y ${debPackage})`], { stdio: 'inherit' });
  }
}

/**
 * `node <nodeArgs> <cli> serve` on `dataDir` and an ephemeral port, `cli` being a build of the
 * CLI (CLI by default: another build lets a benchmark put two versions side by side), with `env`
 * added to this process's environment (but for its engines' variables: the server runs on the
 * embedded stores unless `env` names others).
 */
export async function startServerProcess(dataDir: string, env: Record<string, string> = {}, { cli = CLI, nodeArgs = [] }: { cli?: string; nodeArgs?: string[] } = {}) {
  const serverEnv = { ...withoutEngines(process.env), ...env };
  const child = spawn(process.execPath, [...nodeArgs, cli, 'serve', '--port', '0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: serverEnv,
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    url,
    /** A token for `user` (created on first use), signed with the server's key. */
    token: (user: string) =>
      execFileSync(process.execPath, [cli, 'token', 'create', '--user', user, '--data-dir', dataDir], { env: serverEnv }).toString().trim(),
    /** Peak resident memory of the server process so far, from /proc (Linux). */
    peakRssMiB: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024,
    /** Starts peakRssMiB over from the current RSS, so that a phase's own peak can be read (Linux clear_refs). */
    resetPeakRss: () => writeFileSync(`/proc/${child.pid}/clear_refs`, '5'),
    /** CPU time the server process has used so far, user and system, in seconds, from /proc (Linux, 100 ticks a second). */
    cpuSeconds: () => {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    },
    stop: () => new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')),
  };
}

/** The files of writeDataset, and where file `i` of them lies. */
export const DATASET_FILES = 20_000;
export const datasetFile = (dir: string, i: number) => join(dir, `shard-${String(Math.floor(i / 200)).padStart(3, '0')}`, `item-${String(i).padStart(5, '0')}.bin`);

/** DATASET_FILES files in 100 directories of incompressible bytes, `size` bytes in all (~53.7 KB each for 1 GiB); returns the total. */
export async function writeDataset(dir: string, size: number): Promise<number> {
  const stream = generatedBytes(size + DATASET_FILES * 1000, 9)[Symbol.asyncIterator]();
  let pending = Buffer.alloc(0);
  let total = 0;
  for (let i = 0; i < DATASET_FILES; i++) {
    const fileSize = Math.floor(size / DATASET_FILES) + ((i * 7919) % 2001) - 1000;
    while (pending.length < fileSize) pending = Buffer.concat([pending, (await stream.next()).value as Buffer]);
    const file = datasetFile(dir, i);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, pending.subarray(0, fileSize));
    pending = pending.subarray(fileSize);
    total += fileSize;
  }
  return total;
}

export type ServerProcess = Awaited<ReturnType<typeof startServerProcess>>;
