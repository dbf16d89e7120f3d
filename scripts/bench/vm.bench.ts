/**
 * Issue 12's VM figures, measured on a real server process with the real QEMU runtime, driven
 * over HTTP as a user would:
 *
 *   npm run build && npm run bench -- scripts/bench/vm.bench.ts
 *
 * Needs QEMU and the guest assets (scripts/vm/build-guest.sh; SNAPFORK_VM_ASSETS, default
 * storage/vm-assets) and e2fsprogs. Root images: sparse copies of the guest's rootfs.img grown
 * to 1 GiB and 10 GiB with truncate and resize2fs, so that the guest's ext4 fills its disk
 * (a disk merely larger than its file system would be grown by the guest's init at every
 * boot), pushed by the CLI's delta push as alice's public os1g:v1 and os10g:v1.
 *
 * 1. Ready to exec: bob Vers-forks each image and runs `true` in the fork's VM (booted on that
 *    first use), 1 GiB and 10 GiB alternately; the time from the fork's POST to the exec's answer.
 *    The server's first VM (which boots its kernel and saves the boot template) is timed apart.
 * 2. Branch of a live VM (POST /vm/branch/by_vm/{id}): to its 201 (the branch runs) and to the
 *    branch's first exec; then count=8 (BENCH_VM_BRANCHES) against count=1 alternately, and
 *    count=8 against count=1 of POST /vm/branch/by_commit/{id} (cold boots of the pushed
 *    commit). Branches are deleted between runs.
 * 3. Commit after writing 10 MiB: a new VM of the 1 GiB or the 10 GiB image (alternately) per
 *    run writes 10 MiB of /dev/urandom and syncs, then POST /vm/{id}/commit; the time to its
 *    201 and what the chunk store grew by, as pack files and as the new chunks' stored bytes
 *    per file of the commit. Then a VM of the last 1 GiB commit (resuming its saved memory)
 *    against a VM of the same disk without the machine state (a cold boot), alternately, to
 *    the first exec's answer.
 *
 * BENCH_VM_RUNS sets the runs of each figure (default 5); BENCH_VM_FIGURES the figures measured,
 * a comma list of `ready`, `branch` and `commit` (default all three; one alone, to compare two
 * builds on it, takes about a third of the time). Medians are printed with every run,
 * each section as soon as it is measured. It asserts only correctness (statuses, exit codes,
 * the written file in the commit's VMs), never timing.
 */
import { execFile } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { median, startServerProcess } from './server-process.js';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const RUNS = Number(process.env.BENCH_VM_RUNS ?? 5);
/** How many branches of a live VM are made at once against one (the count=8). */
const MANY = Number(process.env.BENCH_VM_BRANCHES ?? 8);
const FIGURES = new Set((process.env.BENCH_VM_FIGURES ?? 'ready,branch,commit').split(','));
const assetsDir = resolve(process.env.SNAPFORK_VM_ASSETS ?? 'storage/vm-assets');

/** "median X [a, b, ...]" of milliseconds. */
const msFigure = (xs: number[]) => `median ${median(xs).toFixed(0)} ms [${xs.map((x) => x.toFixed(0)).join(', ')}]`;

/** The guest's rootfs.img as a sparse image of `size` bytes whose ext4 fills it, in its own directory. */
async function grownImage(work: string, name: string, size: number): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  const image = join(dir, 'rootfs.img');
  await run('cp', ['--sparse=always', join(assetsDir, 'rootfs.img'), image]);
  await run('e2fsck', ['-fy', image]);
  await run('truncate', ['-s', String(size), image]);
  await run('resize2fs', [image]);
  return dir;
}

/** Digest -> stored size of every chunk in the chunk store's index, read beside the server (WAL). */
function storedChunks(dataDir: string): Map<string, number> {
  const db = new Database(join(dataDir, 'chunks', 'index.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT digest, stored_size FROM chunks').all() as { digest: string; stored_size: number }[];
    return new Map(rows.map((r) => [r.digest, r.stored_size]));
  } finally {
    db.close();
  }
}

/** Bytes of the sealed pack files. */
async function packBytes(dataDir: string): Promise<number> {
  const packs = join(dataDir, 'chunks', 'packs');
  let total = 0;
  for (const fanout of await readdir(packs)) {
    for (const name of await readdir(join(packs, fanout))) total += (await stat(join(packs, fanout, name))).size;
  }
  return total;
}

it.skipIf(!process.env.SNAPFORK_BENCH)('VM: ready to exec from a fork, branch, commit (issue 12)', async () => {
  const work = await mkdtemp(join(tmpdir(), 'snapfork-bench-vm-'));
  const dataDir = join(work, 'data');
  // Room for a live VM and its branches at once.
  const server = await startServerProcess(dataDir, { SNAPFORK_VM_ASSETS: assetsDir, SNAPFORK_VM_MAX_RUNNING: '12', SNAPFORK_VM_MAX_RUNNING_PER_OWNER: '12' });
  const loadBefore = loadavg();
  try {
    const alice = server.token('alice');
    const bob = server.token('bob');
    /** Calls /api/v1`path`, checks the answer's status and resolves with its JSON, of the type the caller expects. */
    const api = async <T = unknown>(token: string, method: string, path: string, status: number, json?: unknown): Promise<T> => {
      const res = await fetch(`${server.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
      const text = await res.text();
      expect(res.status, text).toBe(status);
      return (text ? JSON.parse(text) : undefined) as T;
    };
    type VmId = { vm_id: string };
    const exec = async (token: string, vmId: string, command: string[]) =>
      api<{ exit_code: number; stdout: string }>(token, 'POST', `/vm/${vmId}/exec`, 200, { command });
    const execTrue = async (token: string, vmId: string) => expect((await exec(token, vmId, ['true'])).exit_code).toBe(0);
    const deleteVm = async (token: string, vmId: string) => api(token, 'DELETE', `/vm/${vmId}`, 200);

    // The images, pushed as alice's public os1g:v1 and os10g:v1.
    const pushed: Record<string, { commitId: string; seconds: number }> = {};
    for (const [name, size] of [['os1g', GIB], ['os10g', 10 * GIB]] as const) {
      const dir = await grownImage(work, name, size);
      const started = performance.now();
      const { stdout } = await run(process.execPath, ['dist/cli/main.js', 'push', dir, `alice/${name}:v1`, '--visibility', 'public', '--json'], {
        env: { ...process.env, SNAPFORK_URL: server.url, SNAPFORK_TOKEN: alice },
        maxBuffer: 16 * MIB,
      });
      pushed[name] = { commitId: (JSON.parse(stdout) as { commit_id: string }).commit_id, seconds: (performance.now() - started) / 1000 };
      await rm(dir, { recursive: true, force: true });
    }

    const ratio = (a: number[], b: number[]) => median(a) / median(b);
    const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
    const mibFigure = (xs: number[]) => `median ${mib(median(xs))} [${xs.map((x) => (x / MIB).toFixed(1)).join(', ')}]`;
    /** Goal, figure, met or not: the closing table. */
    const goals: [string, string, boolean][] = [];
    // Each section's figures are printed as soon as they are measured.
    const print = (lines: string[]) => console.log(lines.join('\n'));
    print([
      `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), TCG; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} at start; ${RUNS} runs each`,
      `push by the CLI: 1 GiB image ${pushed.os1g!.seconds.toFixed(1)} s, 10 GiB image ${pushed.os10g!.seconds.toFixed(1)} s`,
    ]);

    // 1. A forked commit's VM ready to exec: bob forks, then runs `true` in the fork's VM.
    if (FIGURES.has('ready')) {
      const ready = { os1g: { fork: [] as number[], ready: [] as number[] }, os10g: { fork: [] as number[], ready: [] as number[] } };
      // The server's first VM boots its kernel and saves the boot template that later boots of
      // the shape resume (README, "Boot templates"): timed on its own, not among the runs.
      const firstStarted = performance.now();
      const first = await api<VmId>(bob, 'POST', '/repositories/fork', 201, { source_org: 'alice', source_repo: 'os1g', source_tag: 'v1', repo_name: 'os1g-first' });
      await execTrue(bob, first.vm_id);
      const firstReady = performance.now() - firstStarted;
      await deleteVm(bob, first.vm_id);
      for (let i = 0; i < RUNS; i++) {
        for (const name of ['os1g', 'os10g'] as const) {
          const started = performance.now();
          const forked = await api<VmId>(bob, 'POST', '/repositories/fork', 201, { source_org: 'alice', source_repo: name, source_tag: 'v1', repo_name: `${name}-${i}` });
          ready[name].fork.push(performance.now() - started);
          await execTrue(bob, forked.vm_id);
          ready[name].ready.push(performance.now() - started);
          await deleteVm(bob, forked.vm_id);
        }
      }
      const readyRatio = ratio(ready.os10g.ready, ready.os1g.ready);
      print([
        '1. VM from a forked commit ready to exec (the fork\'s POST to the first `true` answered in its VM)',
        `   fork alone, 1 GiB:    ${msFigure(ready.os1g.fork)}`,
        `   fork alone, 10 GiB:   ${msFigure(ready.os10g.fork)}`,
        `   the server's first VM (boots its kernel, saves the boot template), 1 GiB: ${firstReady.toFixed(0)} ms`,
        `   ready, 1 GiB:         ${msFigure(ready.os1g.ready)}`,
        `   ready, 10 GiB:        ${msFigure(ready.os10g.ready)}`,
        `   ratio 10 GiB / 1 GiB: ${readyRatio.toFixed(3)}`,
      ]);
      const slowest = Math.max(median(ready.os1g.ready), median(ready.os10g.ready));
      goals.push(['ready to exec <= 3 s (TCG)', `${(median(ready.os1g.ready) / 1000).toFixed(2)} s (1 GiB), ${(median(ready.os10g.ready) / 1000).toFixed(2)} s (10 GiB)`, slowest <= 3000]);
      goals.push(['10 GiB within 10% of 1 GiB', `ratio ${readyRatio.toFixed(3)}`, Math.abs(readyRatio - 1) <= 0.1]);
    }

    // 2. Branches of a live VM, then of a commit: each run's branches deleted before the next.
    if (FIGURES.has('branch')) {
      const branch = async (path: string, count: number) => {
        const started = performance.now();
        const made = (await api<{ vms: VmId[] }>(alice, 'POST', `${path}?count=${count}`, 201)).vms;
        const answered = performance.now() - started;
        expect(made).toHaveLength(count);
        await Promise.all(made.map((vm) => execTrue(alice, vm.vm_id)));
        const execed = performance.now() - started;
        await Promise.all(made.map((vm) => deleteVm(alice, vm.vm_id)));
        return { answered, execed };
      };
      /** count=1 and count=`many` alternately: to the 201, and to every branch's first exec answered. */
      const oneAgainstMany = async (path: string, many: number) => {
        const one: number[] = [];
        const several: number[] = [];
        const severalExeced: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          one.push((await branch(path, 1)).answered);
          const { answered, execed } = await branch(path, many);
          several.push(answered);
          severalExeced.push(execed);
        }
        const lines = [
          `   ${path.split('/')[3]} count=1 to 201 (paired): ${msFigure(one)}`,
          `   ${path.split('/')[3]} count=${many} to 201: ${msFigure(several)}; to all ${many} exec'd ${msFigure(severalExeced)}`,
          `   ${path.split('/')[3]} ratio count=${many} / count=1: ${ratio(several, one).toFixed(2)}`,
        ];
        return { lines, ratio: ratio(several, one) };
      };
      const parent = (await api<VmId>(alice, 'POST', '/vm/from_commit', 201, { ref: 'os1g:v1' })).vm_id;
      await execTrue(alice, parent);
      const byVm = { answered: [] as number[], execed: [] as number[] };
      for (let i = 0; i < RUNS; i++) {
        const { answered, execed } = await branch(`/vm/branch/by_vm/${parent}`, 1);
        byVm.answered.push(answered);
        byVm.execed.push(execed);
      }
      print([
        '2. Branch of a live VM of the 1 GiB image (POST /vm/branch/by_vm/{id})',
        `   count=1 to 201:        ${msFigure(byVm.answered)}`,
        `   count=1 to first exec: ${msFigure(byVm.execed)}`,
      ]);
      goals.push(['branch of a live VM <= 300 ms to running', `${median(byVm.answered).toFixed(0)} ms to 201, ${median(byVm.execed).toFixed(0)} ms to exec`, median(byVm.answered) <= 300]);
      // Printed, not a goal: issue 12 asks the 2x of a commit's branches (below), not of a live VM's.
      print((await oneAgainstMany(`/vm/branch/by_vm/${parent}`, MANY)).lines);
      await deleteVm(alice, parent);
      const commitMany = await oneAgainstMany(`/vm/branch/by_commit/${pushed.os1g!.commitId}`, 8);
      print(commitMany.lines);
      goals.push(['count=8 of a commit <= 2x count=1 (by_commit)', `ratio ${commitMany.ratio.toFixed(2)}`, commitMany.ratio <= 2]);
    }

    // 3. Commit after writing 10 MiB into a VM of the 1 GiB and of the 10 GiB image, alternately: a new VM each run.
    if (FIGURES.has('commit')) {
      const commitFigures = () => ({ ms: [] as number[], packGrowth: [] as number[], disk: [] as number[], memory: [] as number[], otherState: [] as number[] });
      const commits = { os1g: commitFigures(), os10g: commitFigures() };
      let vmCommit = '';
      for (let i = 0; i < RUNS; i++) {
        for (const name of ['os1g', 'os10g'] as const) {
          const figures = commits[name];
          const vm = (await api<VmId>(alice, 'POST', '/vm/from_commit', 201, { ref: `${name}:v1` })).vm_id;
          expect((await exec(alice, vm, ['sh', '-c', 'dd if=/dev/urandom of=/root/f bs=1M count=10 2>/dev/null && sync'])).exit_code).toBe(0);
          const chunksBefore = storedChunks(dataDir);
          const packsBefore = await packBytes(dataDir);
          const started = performance.now();
          const commitId = (await api<{ commit_id: string }>(alice, 'POST', `/vm/${vm}/commit`, 201, {})).commit_id;
          figures.ms.push(performance.now() - started);
          figures.packGrowth.push((await packBytes(dataDir)) - packsBefore);
          // Each new chunk counted once, for the first file of the commit that holds it.
          const chunksAfter = storedChunks(dataDir);
          const manifest = await api<{ entries: { path: string; chunks: { digest: string }[] }[] }>(alice, 'GET', `/repos/alice/${name}/commits/${commitId}/manifest`, 200);
          const counted = new Set<string>();
          const byFile = new Map<string, number>();
          for (const entry of manifest.entries) {
            for (const { digest } of entry.chunks) {
              if (chunksBefore.has(digest) || counted.has(digest)) continue;
              counted.add(digest);
              byFile.set(entry.path, (byFile.get(entry.path) ?? 0) + (chunksAfter.get(digest) ?? 0));
            }
          }
          figures.disk.push(byFile.get('rootfs.img') ?? 0);
          figures.memory.push(byFile.get('.snapfork-vm/memory.ram') ?? 0);
          figures.otherState.push([...byFile].filter(([path]) => path !== 'rootfs.img' && path !== '.snapfork-vm/memory.ram').reduce((n, [, bytes]) => n + bytes, 0));
          await deleteVm(alice, vm);
          if (name === 'os1g') vmCommit = commitId;
        }
      }
      const storedRatio = median(commits.os1g.packGrowth) / (10 * MIB);
      print([
        '3. Commit after writing 10 MiB into a VM (a new VM each run; 1 GiB and 10 GiB images alternately)',
        ...(['os1g', 'os10g'] as const).flatMap((name) => {
          const f = commits[name];
          return [
            `   ${name === 'os1g' ? '1 GiB' : '10 GiB'} image:`,
            `     POST /vm/{id}/commit to 201:   ${msFigure(f.ms)}`,
            `     pack files grew by:            ${mibFigure(f.packGrowth)} (${(median(f.packGrowth) / (10 * MIB)).toFixed(2)}x the 10 MiB written)`,
            `     new chunks, rootfs.img:        ${mibFigure(f.disk)}`,
            `     new chunks, memory.ram:        ${mibFigure(f.memory)}`,
            `     new chunks, other state files: ${mibFigure(f.otherState)}`,
          ];
        }),
        `   commit time ratio 10 GiB / 1 GiB: ${ratio(commits.os10g.ms, commits.os1g.ms).toFixed(2)}`,
      ]);
      goals.push(['commit <= 2 s (1 GiB image)', `${(median(commits.os1g.ms) / 1000).toFixed(2)} s (10 GiB image: ${(median(commits.os10g.ms) / 1000).toFixed(2)} s)`, median(commits.os1g.ms) <= 2000]);
      goals.push(['commit stores <= 2x the bytes written', `${storedRatio.toFixed(2)}x (pack files, 1 GiB image)`, storedRatio <= 2]);

      // The last commit resumed (its saved memory) against the same disk booted cold (a commit
      // of its tree without the machine state), alternately.
      const saved = await api<{ entries: { path: string }[] }>(alice, 'GET', `/repos/alice/os1g/commits/${vmCommit}/manifest`, 200);
      const entries = saved.entries.filter((e) => !e.path.startsWith('.snapfork-vm'));
      const { commit_id: diskOnly } = await api<{ commit_id: string }>(alice, 'POST', '/repos/alice/os1g/commits', 201, { tag: 'disk-only', manifest: { entries } });
      const start = { resumed: { answered: [] as number[], execed: [] as number[] }, cold: { answered: [] as number[], execed: [] as number[] } };
      for (let i = 0; i < RUNS; i++) {
        for (const [kind, commitId] of [['resumed', vmCommit], ['cold', diskOnly]] as const) {
          const started = performance.now();
          const { vm_id: vm } = await api<VmId>(alice, 'POST', '/vm/from_commit', 201, { commit_id: commitId });
          start[kind].answered.push(performance.now() - started);
          await execTrue(alice, vm);
          start[kind].execed.push(performance.now() - started);
          // Both hold the 10 MiB written before the commit.
          expect((await exec(alice, vm, ['test', '-s', '/root/f'])).exit_code).toBe(0);
          await deleteVm(alice, vm);
        }
      }
      print([
        'from_commit of a VM\'s commit (resumes its memory) against the same disk without it (cold boot)',
        `   resumed: to 201 ${msFigure(start.resumed.answered)}; to first exec ${msFigure(start.resumed.execed)}`,
        `   cold:    to 201 ${msFigure(start.cold.answered)}; to first exec ${msFigure(start.cold.execed)}`,
      ]);
    }
    print([
      '',
      `load average at end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
      `${'goal'.padEnd(44)}${'measured (medians)'.padEnd(40)}`,
      ...goals.map(([goal, figure, met]) => `${goal.padEnd(44)}${figure.padEnd(40)}${met ? 'met' : 'MISSED'}`),
    ]);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
});
