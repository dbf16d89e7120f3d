/**
 * One trial of each tool on one data set: snapfork's HTTP tar push and CLI delta push/pull (each
 * into a fresh server process), restic, borg and `tar | zstd -3 -T1`. A trial records what it
 * measured through `record`; MB/s are of the data set's logical bytes.
 */
import { execFileSync } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startServerProcess, type ServerProcess } from '../server-process.js';

export interface DataSet {
  name: string;
  /** Version 1 and version 2, as directories and as tars of them. */
  v1: string;
  v1Tar: string;
  v2: string;
  v2Tar: string;
  /** Logical bytes of version 1. */
  bytes: number;
}

export type Figure =
  | 'first push'
  | 'unchanged push'
  | 'unchanged stored bytes'
  | 'growth %'
  | 'export'
  | 'CLI push'
  | 'CLI pull';
export type Phase = 'push' | 'pull' | 'export' | '64-client forks';

export interface Trial {
  /** Where the trial may put its repositories and outputs (emptied after). */
  work: string;
  record: (figure: Figure, value: number) => void;
  /** The server's peak RSS in a phase, MiB. */
  peakRss: (phase: Phase, mib: number) => void;
}

export interface Tool {
  label: string;
  run(set: DataSet, trial: Trial): Promise<void>;
}

export const exec = (command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) =>
  execFileSync(command, args, { maxBuffer: 256 * 1024 * 1024, ...options, env: { ...process.env, ...options.env } });

/** Seconds `work` takes. */
export async function timed(work: () => unknown): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

/** Apparent bytes of the files under `dir` whose names pass `keep`. */
export async function bytesUnder(dir: string, keep: (name: string) => boolean = () => true): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile() && keep(e.name)) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

/** A fresh server of `cli` given to `use`, then stopped and its data removed. */
export async function withServer(work: string, cli: string, nodeArgs: string[], use: (server: ServerProcess, dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = join(work, 'server');
  const server = await startServerProcess(dataDir, {}, { cli, nodeArgs });
  try {
    await use(server, dataDir);
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const mbps = (bytes: number, seconds: number) => bytes / 1e6 / seconds;

/** snapfork's HTTP tar push (first, unchanged, v2) and export of `cli`'s server. */
export function snapforkHttp(cli: string, label: string, nodeArgs: string[]): Tool {
  return {
    label,
    async run(set, { work, record, peakRss }) {
      await withServer(work, cli, nodeArgs, async (server, dataDir) => {
        const token = server.token('alice');
        const created = await fetch(`${server.url}/api/v1/user/repos`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'bench', visibility: 'private' }),
        });
        if (created.status !== 201) throw new Error(`creating the repository answered ${created.status}`);
        const tag = `${server.url}/api/v1/repos/alice/bench/tags`;
        const auth = ['-H', `Authorization: Bearer ${token}`];
        const push = (name: string, tar: string) => timed(() => exec('curl', ['-sS', '-f', '-o', '/dev/null', '-T', tar, ...auth, '-H', 'Content-Type: application/x-tar', `${tag}/${name}/archive`]));
        const packBytes = () => bytesUnder(join(dataDir, 'chunks'), (name) => name.endsWith('.pack'));

        server.resetPeakRss();
        record('first push', mbps(set.bytes, await push('v1', set.v1Tar)));
        peakRss('push', server.peakRssMiB());
        const packsBefore = await packBytes();
        record('unchanged push', mbps(set.bytes, await push('v1-again', set.v1Tar)));
        record('unchanged stored bytes', (await packBytes()) - packsBefore);
        const storeBefore = await bytesUnder(dataDir);
        await push('v2', set.v2Tar);
        record('growth %', (((await bytesUnder(dataDir)) - storeBefore) / storeBefore) * 100);
        server.resetPeakRss();
        record('export', mbps(set.bytes, await timed(() => exec('curl', ['-sS', '-f', '-o', '/dev/null', ...auth, `${tag}/v1/archive`]))));
        peakRss('export', server.peakRssMiB());
      });
    },
  };
}

/** snapfork's CLI delta push into a fresh server, then a fresh pull of what it pushed. */
export function snapforkCli(cli: string, label: string, nodeArgs: string[]): Tool {
  return {
    label,
    async run(set, { work, record, peakRss }) {
      await withServer(work, cli, nodeArgs, async (server) => {
        const env = { SNAPFORK_URL: server.url, SNAPFORK_TOKEN: server.token('alice') };
        server.resetPeakRss();
        record('CLI push', mbps(set.bytes, await timed(() => exec(process.execPath, [cli, 'push', set.v1, 'alice/bench:v1', '--json'], { env }))));
        peakRss('push', server.peakRssMiB());
        const target = join(work, 'pulled');
        server.resetPeakRss();
        record('CLI pull', mbps(set.bytes, await timed(() => exec(process.execPath, [cli, 'pull', 'alice/bench:v1', target, '--json'], { env }))));
        peakRss('pull', server.peakRssMiB());
        await rm(target, { recursive: true, force: true });
      });
    },
  };
}

export const restic: Tool = {
  label: 'restic',
  async run(set, { work, record }) {
    const repo = join(work, 'restic');
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(work, 'restic-cache') };
    exec('restic', ['init', '-q'], { env });
    record('first push', mbps(set.bytes, await timed(() => exec('restic', ['backup', '-q', '--tag', 'v1', '.'], { env, cwd: set.v1 }))));
    record('unchanged push', mbps(set.bytes, await timed(() => exec('restic', ['backup', '-q', '--force', '.'], { env, cwd: set.v1 }))));
    const before = await bytesUnder(repo);
    exec('restic', ['backup', '-q', '.'], { env, cwd: set.v2 });
    record('growth %', (((await bytesUnder(repo)) - before) / before) * 100);
    const target = join(work, 'restored');
    record('export', mbps(set.bytes, await timed(() => exec('restic', ['restore', '-q', 'latest', '--tag', 'v1', '--target', target], { env }))));
  },
};

export const borg: Tool = {
  label: 'borg',
  async run(set, { work, record }) {
    const repo = join(work, 'borg');
    const env = { BORG_BASE_DIR: join(work, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes' };
    const create = (archive: string, cwd: string, ...options: string[]) => exec('borg', ['create', '--compression', 'zstd,3', ...options, `${repo}::${archive}`, '.'], { env, cwd });
    exec('borg', ['init', '--encryption=none', repo], { env });
    record('first push', mbps(set.bytes, await timed(() => create('v1', set.v1))));
    record('unchanged push', mbps(set.bytes, await timed(() => create('v1-again', set.v1, '--files-cache=disabled'))));
    const before = await bytesUnder(repo);
    create('v2', set.v2);
    record('growth %', (((await bytesUnder(repo)) - before) / before) * 100);
    const target = join(work, 'extracted');
    exec('mkdir', ['-p', target]);
    record('export', mbps(set.bytes, await timed(() => exec('borg', ['extract', `${repo}::v1`], { env, cwd: target }))));
  },
};

export const tarZstd: Tool = {
  label: 'tar | zstd -3 -T1',
  async run(set, { work, record }) {
    const out = join(work, 'out.tar.zst');
    record('first push', mbps(set.bytes, await timed(() => exec('sh', ['-c', `tar -cf - -C "${set.v1}" . | zstd -q -3 -T1 -f -o "${out}"`]))));
    record('export', mbps(set.bytes, await timed(() => exec('sh', ['-c', `zstd -q -d -c "${out}" > /dev/null`]))));
  },
};
