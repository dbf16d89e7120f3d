/**
 * The crash loop: a built server (dist/) on the embedded stores takes a mixed load of tar pushes,
 * forks, tag moves, tag deletions and garbage collections, and in some of its lives commits of a
 * running VM, while it is killed with SIGKILL at a random moment; after each restart, fsck must
 * find nothing missing or corrupt and every write answered 2xx must be there, byte for byte.
 * Writes cut off by the kill may or may not have landed, but what landed is whole.
 *
 * Used by crash.reliability.ts (the full run, `npm run reliability`) and by
 * test/integration/crash.test.ts (a short run in `npm test`). Needs `npm run build` first.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tarOfEntries } from '../../test/support/trees.js';
import { seededRandom } from '../../test/support/seeded-random.js';

const CLI = join(process.cwd(), 'dist', 'cli', 'main.js');

export interface CrashLoopOptions {
  /** Kills to survive. */
  kills: number;
  /** Seeds the schedule (what runs, when the kill lands): a failing run is replayed with its seed. */
  seed: number;
  /** The child's environment, without the variables that would move its stores elsewhere. */
  env: NodeJS.ProcessEnv;
  /** Where progress goes, a line at a time. */
  log?: (line: string) => void;
  /**
   * Every this many lives of the server (the first included), a VM boots (SNAPFORK_VM_ASSETS must
   * hold the guest assets) and one writer commits it, again and again, while the others go on;
   * such a life ends a random while after its first VM commit landed, so that commits land and
   * others are cut off. 0: no VM.
   */
  vmEvery?: number;
}

export interface CrashLoopReport {
  kills: number;
  /** Writes answered 2xx, all found intact after the restarts. */
  acknowledged: number;
  /** Requests cut off by a kill (no answer): their outcome is free, their effects whole. */
  cutOff: number;
  /** Answers of 5xx seen (a server under load may refuse with 503, never 500). */
  serverErrors: number;
  collections: number;
  fsckRuns: number;
  /** VM commits answered 201 and tagged, each found after the restarts. */
  vmCommits: number;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Server {
  url: string;
  child: ChildProcess;
  /** Set by kill(), before the signal is sent. */
  killed?: boolean;
  /** Set when the process ended without kill(): its exit code or signal (SIGKILL: the kernel's OOM killer, say). */
  died?: string;
}

/**
 * `snapfork serve` on `dataDir`, its output (JSON logs, stderr) appended to `logFile`: when a
 * run fails, the log of the server that failed it says why.
 */
async function startServer(dataDir: string, env: NodeJS.ProcessEnv, logFile: string): Promise<Server> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  const server: Server = { url: '', child };
  child.once('exit', (code, signal) => {
    if (!server.killed) server.died = `exit ${code ?? signal}`;
  });
  server.url = await new Promise<string>((resolve, reject) => {
    let seen = '';
    const listening = (d: Buffer) => {
      seen += d.toString();
      const m = /listening on (http:\/\/[^\s")]+)/.exec(seen);
      if (!m) return;
      child.stdout.off('data', listening);
      resolve(m[1]!);
    };
    child.stdout.on('data', listening);
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  return server;
}

function kill(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return resolve();
    server.child.once('exit', () => resolve());
    server.killed = true;
    server.child.kill('SIGKILL');
  });
}

/**
 * What a tag must hold after the restarts: its files' digests, by path; `path#start-end` is the
 * digest of that byte range of the file.
 */
type Content = Record<string, string>;

/** The files of a VM's commit that are checked (storage/README.md): its disk, by range, and its machine state. */
const ROOT_DISK = 'rootfs.img';
const MACHINE_STATE = '.snapfork-vm/machine.json';
const RANGE = 1024 * 1024;

/** The Range header that `path#start-end` asks for; none for a whole file. */
const rangeOf = (path: string): RequestInit => {
  const range = path.split('#')[1];
  return range === undefined ? {} : { headers: { range: `bytes=${range}` } };
};

export async function runCrashLoop({ kills, seed, env, log = () => undefined, vmEvery = 0 }: CrashLoopOptions): Promise<CrashLoopReport> {
  const next = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const dataDir = await mkdtemp(join(tmpdir(), 'snapfork-crash-loop-'));
  const report: CrashLoopReport = { kills: 0, acknowledged: 0, cutOff: 0, serverErrors: 0, collections: 0, fsckRuns: 0, vmCommits: 0 };
  const tokenOf = (scopes: string[]) =>
    execFileSync(process.execPath, [CLI, 'token', 'create', '--user', 'alice', ...scopes.flatMap((s) => ['--scope', s]), '--data-dir', dataDir], { env })
      .toString()
      .trim();
  // Contents reused across pushes, so that pushes dedupe against chunks that tag deletions made garbage.
  const pool = Array.from({ length: 6 }, () => randomBytes(96 * 1024));
  /** Acknowledged tags of `alice/data` and repositories forked from it: what each must hold. */
  const expected = new Map<string, Content>();
  /** Tags whose last acknowledged state is gone or changing: a cut-off request may have moved them. */
  const unsettled = new Set<string>();
  const logFile = `${dataDir}.log`;
  let server = await startServer(dataDir, env, logFile);
  const admin = tokenOf(['repo:read', 'repo:write', 'admin']);
  const call = (path: string, init: RequestInit & { json?: unknown } = {}) =>
    fetch(server.url + path, {
      ...init,
      headers: { authorization: `Bearer ${admin}`, ...(init.json !== undefined && { 'content-type': 'application/json' }), ...(init.headers as Record<string, string>) },
      ...(init.json !== undefined && { body: JSON.stringify(init.json) }),
    });
  const created = await call('/api/v1/user/repos', { method: 'POST', json: { name: 'data', visibility: 'private' } });
  if (created.status !== 201) throw new Error(`creating alice/data answered ${created.status}`);

  let serial = 0;
  /** Bumped when a request that changes a tag starts: a fork or move that saw another value is not trusted. */
  const version = new Map<string, number>();
  const touch = (key: string) => version.set(key, (version.get(key) ?? 0) + 1);
  /** Tags a move or deletion is in flight for: no second one starts on them meanwhile. */
  const busy = new Set<string>();
  /** Keys acknowledged since the last restart: checked byte for byte after it (the rest by sample). */
  const fresh = new Set<string>();
  const acknowledge = (key: string, content: Content) => {
    expected.set(key, content);
    fresh.add(key);
    report.acknowledged++;
  };
  const pushedTags = () => [...expected.keys()].filter((k) => k.startsWith('alice/data:p') && !busy.has(k));

  /** One write chosen at random; records what an acknowledgement promises. */
  async function write(): Promise<void> {
    const n = serial++;
    const roll = next();
    if (roll < 0.45) {
      const files = { 'pooled.bin': pick(pool), 'own.bin': randomBytes(Math.floor(next() * 512 * 1024) + 1) };
      const key = `alice/data:p${n}`;
      unsettled.add(key);
      const res = await call(`/api/v1/repos/alice/data/tags/p${n}/archive`, { method: 'PUT', headers: { 'content-type': 'application/x-tar' }, body: tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body }))) });
      if (res.status === 201) {
        unsettled.delete(key);
        acknowledge(key, Object.fromEntries(Object.entries(files).map(([p, d]) => [p, sha(d)])));
      } else await settle(res, [422]); // 422: chunks a collection took meanwhile, to push again
    } else if (roll < 0.6) {
      const before = new Map(pushedTags().map((k) => [k, { content: expected.get(k)!, version: version.get(k) }]));
      if (before.size === 0) return;
      const name = `fork${n}`;
      const res = await call('/api/v1/repos/alice/data/forks', { method: 'POST', json: { name } });
      if (res.status !== 201) return settle(res, []);
      // The fork holds the tags that stood still while it was made (others may or may not be in
      // it). One write: a few of its tags are read back after the next restart, the rest by sample.
      const held = [...before].filter(([key, { version: seen }]) => expected.has(key) && version.get(key) === seen);
      for (const [key, { content }] of held) expected.set(`alice/${name}:${key.split(':')[1]}`, content);
      for (let i = 0; i < Math.min(3, held.length); i++) fresh.add(`alice/${name}:${pick(held)[0].split(':')[1]}`);
      report.acknowledged++;
    } else if (roll < 0.75) {
      const tags = pushedTags();
      if (tags.length < 2) return;
      const [from, to] = [pick(tags), pick(tags)];
      const content = expected.get(from)!;
      const seen = version.get(from);
      const tag = (await (await call(`/api/v1/repos/alice/data/tags/${from.split(':')[1]}`)).json()) as { commit_id?: string };
      if (from === to || !tag.commit_id || version.get(from) !== seen || !expected.has(from) || busy.has(to) || !expected.has(to)) return;
      touch(to);
      busy.add(to);
      unsettled.add(to);
      const res = await call(`/api/v1/repositories/data/tags/${to.split(':')[1]}`, { method: 'PATCH', json: { commit_id: tag.commit_id } });
      busy.delete(to);
      if (res.status !== 204) return settle(res, [404]); // the commit was collected meanwhile
      unsettled.delete(to);
      acknowledge(to, content);
    } else if (roll < 0.9) {
      const tags = pushedTags();
      if (tags.length < 4) return;
      const victim = pick(tags);
      touch(victim);
      busy.add(victim);
      expected.delete(victim);
      unsettled.add(victim);
      const res = await call(`/api/v1/repos/alice/data/tags/${victim.split(':')[1]}`, { method: 'DELETE' });
      busy.delete(victim);
      if (res.status === 204) {
        unsettled.delete(victim);
        report.acknowledged++;
      } else await settle(res, [404]);
    } else {
      const res = await call('/api/v1/admin/gc', { method: 'POST', json: { grace_seconds: 0 } });
      if (res.status === 200) report.collections++;
      else await settle(res, [409]);
    }
  }

  /**
   * Commits the VM after a write of random bytes in it, and tags the commit in alice/vm-commits
   * (where commits of VMs of the system image go); once both are answered, what the commit holds
   * is recorded as read right then: its machine state and a random range of its disk.
   */
  async function commitVm(vmId: string, landed: () => void): Promise<void> {
    const n = serial++;
    const wrote = await call(`/api/v1/vm/${vmId}/exec`, { method: 'POST', json: { command: ['sh', '-c', `head -c ${4096 + Math.floor(next() * 262144)} /dev/urandom > /root/f${n}`] } });
    if (wrote.status !== 200) return settle(wrote, []);
    const committed = await call(`/api/v1/vm/${vmId}/commit`, { method: 'POST', json: { name: `c${n}` } });
    if (committed.status !== 201) return settle(committed, [422]); // 422: a collection took chunks meanwhile
    const { commit_id: commitId } = (await committed.json()) as { commit_id: string };
    const tagged = await call('/api/v1/repositories/vm-commits/tags', { method: 'POST', json: { tag_name: `c${n}`, commit_id: commitId } });
    if (tagged.status !== 201) return settle(tagged, []);
    const key = `alice/vm-commits:c${n}`;
    report.vmCommits++;
    const disk = (await (await call(`/api/v1/repos/alice/vm-commits/tags/c${n}/tree`)).json()) as { name: string; size: number }[];
    const size = disk.find((e) => e.name === ROOT_DISK)?.size ?? 0;
    const start = Math.floor(next() * Math.max(1, size - RANGE));
    const content: Content = {};
    for (const path of [MACHINE_STATE, `${ROOT_DISK}#${start}-${start + RANGE - 1}`]) {
      const res = await call(`/api/v1/repos/alice/vm-commits/tags/c${n}/files/${path.split('#')[0]}`, rangeOf(path));
      if (res.status !== 200 && res.status !== 206) return settle(res, []);
      content[path] = sha(Buffer.from(await res.arrayBuffer()));
    }
    acknowledge(key, content);
    landed();
  }

  /** An answer that is not the write's success: only `allowed` statuses are; anything else fails the run. */
  async function settle(res: Response, allowed: number[]): Promise<void> {
    if (allowed.includes(res.status)) return;
    if (res.status >= 500) report.serverErrors++;
    throw new Error(`unexpected ${res.status}: ${await res.text()}`);
  }

  /** fsck finds nothing; what was acknowledged since the last restart, and a sample of the rest, reads back. */
  async function verify(): Promise<void> {
    const fsck = await call('/api/v1/admin/fsck', { method: 'POST', json: {} });
    const found = (await fsck.json()) as { ok: boolean };
    report.fsckRuns++;
    if (fsck.status !== 200 || !found.ok) throw new Error(`fsck after kill ${report.kills}: ${JSON.stringify(found)}`);
    const settled = [...expected.keys()].filter((k) => !unsettled.has(k));
    const sample = new Set([...settled.filter((k) => fresh.has(k)), ...Array.from({ length: Math.min(20, settled.length) }, () => pick(settled))]);
    for (const key of sample) {
      const [repo, tag] = key.split(':') as [string, string];
      for (const [path, digest] of Object.entries(expected.get(key)!)) {
        const res = await call(`/api/v1/repos/${repo}/tags/${tag}/files/${path.split('#')[0]}`, rangeOf(path));
        const bytes = Buffer.from(await res.arrayBuffer());
        if (res.status !== (path.includes('#') ? 206 : 200) || sha(bytes) !== digest) throw new Error(`after kill ${report.kills}: ${key} ${path} answered ${res.status} with ${bytes.length} bytes, not the bytes acknowledged`);
      }
    }
    fresh.clear();
    // A tag a cut-off request touched may hold either value: it is no longer tracked.
    for (const key of unsettled) expected.delete(key);
    unsettled.clear();
  }

  /** A VM of the system image, booted and answering exec. */
  async function bootVm(): Promise<string> {
    const res = await call('/api/v1/vm/new_root?wait_boot=true', { method: 'POST', json: { vm_config: {} } });
    if (res.status !== 201) throw new Error(`booting a VM answered ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { vm_id: string }).vm_id;
  }

  try {
    while (report.kills < kills) {
      // A few writers at once, for a random while; then the kill lands wherever they are. In a
      // VM's life one of them commits the VM instead, and the while is long enough for commits.
      const vmId = vmEvery > 0 && report.kills % vmEvery === 0 ? await bootVm() : undefined;
      let landed!: () => void;
      const firstVmCommit = new Promise<void>((resolve) => (landed = resolve));
      let killed = false;
      const writers = Array.from({ length: 3 }, async (_, i) => {
        while (!killed) {
          try {
            await (vmId && i === 0 ? commitVm(vmId, landed) : write());
          } catch (e) {
            if (killed) report.cutOff++;
            else if (server.died) throw new Error(`the server ended (${server.died}) without being killed`, { cause: e });
            else throw e;
          }
        }
      });
      const running = Promise.all(writers);
      // A writer's failure ends the run rather than the wait.
      if (vmId) await Promise.race([firstVmCommit, running]);
      await new Promise((resolve) => setTimeout(resolve, vmId ? next() * 4000 : 50 + next() * 600));
      killed = true;
      await kill(server);
      await running;
      report.kills++;
      server = await startServer(dataDir, env, logFile);
      await verify();
      log(`kill ${report.kills}/${kills}: ${report.acknowledged} acknowledged (${report.vmCommits} VM commits), ${report.cutOff} cut off, ${report.collections} collections`);
    }
    await rm(logFile, { force: true });
    return report;
  } catch (e) {
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-40).join('\n');
    log(`the server's last log lines (all of them in ${logFile}):\n${tail}`);
    throw e;
  } finally {
    await kill(server);
    await rm(dataDir, { recursive: true, force: true });
  }
}
