/**
 * Kill -9 in the middle of a push: the server process dies with a temp pack half written, and
 * on restart every acknowledged write is there, the cut-off push left no commit, no tag and no
 * visible chunk, and the temp packs are gone. Then a short run of the crash loop
 * (scripts/reliability/crash.ts). Runs the built server (dist/) in child processes.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCrashLoop } from '../../scripts/reliability/crash.js';
import { withoutEngines } from '../support/engines.js';
import { generatedTar } from '../support/generated.js';
import { buildVmAssets } from '../support/vm-assets.js';
import { describeTree, makeSampleTree, tarOf, tempDir, untar } from '../support/trees.js';

const CLI = join(process.cwd(), 'dist', 'cli', 'main.js');
/**
 * The children's environment: this one without the variables that move the stores elsewhere
 * (PostgreSQL, S3, set when the suites run against them), since the test kills a server with the
 * embedded stores and inspects its data directory.
 */
const embedded = withoutEngines(process.env);
let dataDir: string;
let server: { url: string; child: ChildProcess } | undefined;

async function start(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'], env: embedded });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url, child };
}

beforeAll(async () => {
  // The child runs what `npm start` runs; build it from the sources under test.
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  dataDir = await mkdtemp(join(tmpdir(), 'snapfork-crash-'));
}, 300_000); // tsc on a busy 2-core machine
afterAll(async () => {
  server?.child.kill('SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
});

it('loses no acknowledged write and shows nothing of a push cut off by kill -9', async () => {
  server = await start();
  const token = execFileSync(process.execPath, [CLI, 'token', 'create', '--user', 'alice', '--data-dir', dataDir], { env: embedded }).toString().trim();
  const api = (path: string, init: RequestInit = {}) =>
    fetch(server!.url + path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } });
  expect((await api('/api/v1/user/repos', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"disk"}' })).status).toBe(201);
  const sample = await makeSampleTree();
  const acked = await api('/api/v1/repos/alice/disk/tags/v1/archive', { method: 'PUT', headers: { 'content-type': 'application/x-tar' }, body: await tarOf(sample) });
  expect(acked.status).toBe(201);

  // 256 MiB of distinct chunks: more than one pack, so a sealed temp pack sits in tmp/ when we kill.
  // Counted as fetch pulls it (backpressure), so the kill lands while the server is mid-push.
  const server1 = server;
  async function* body(): AsyncGenerator<Buffer> {
    let sent = 0;
    for await (const chunk of generatedTar('disk.img', 256 * 1024 * 1024, 5)) {
      sent += (chunk as Buffer).length;
      if (sent > 160 * 1024 * 1024 && !server1.child.killed) server1.child.kill('SIGKILL');
      yield chunk as Buffer;
    }
  }
  const cut = await api('/api/v1/repos/alice/disk/tags/v2/archive', {
    method: 'PUT', headers: { 'content-type': 'application/x-tar' }, body: Readable.from(body()), duplex: 'half',
  }).catch((e: unknown) => e);
  expect(cut).toBeInstanceOf(Error);
  await new Promise((resolve) => (server!.child.exitCode !== null || server!.child.signalCode !== null ? resolve(undefined) : server!.child.once('exit', resolve)));
  expect((await readdir(join(dataDir, 'chunks', 'tmp'))).length).toBeGreaterThan(0);

  server = await start();
  const tags = (await (await api('/api/v1/repos/alice/disk/tags')).json()) as { name: string }[];
  expect(tags.map((t) => t.name)).toEqual(['v1']);
  const history = (await (await api('/api/v1/repos/alice/disk/commits?tag=v1')).json()) as unknown[];
  expect(history).toHaveLength(1);
  expect(await readdir(join(dataDir, 'chunks', 'tmp'))).toEqual([]);
  const pulled = await tempDir();
  await untar(Buffer.from(await (await api('/api/v1/repos/alice/disk/tags/v1/archive')).arrayBuffer()), pulled);
  expect(await describeTree(pulled)).toEqual(await describeTree(sample));
});

it('survives kills -9 at random moments under pushes, forks, tag moves, deletions, collections and VM commits (a short crash loop)', async () => {
  const env = { ...embedded, SNAPFORK_VM_ASSETS: await buildVmAssets() };
  const report = await runCrashLoop({ kills: 4, seed: 7, env, vmEvery: 2 });
  expect(report).toMatchObject({ kills: 4, serverErrors: 0, fsckRuns: 4 });
  expect(report.acknowledged).toBeGreaterThan(0);
  expect(report.vmCommits).toBeGreaterThan(0);
}, 600_000);
