/**
 * The disk filling up during a push: a server whose data directory is a small tmpfs answers a
 * push that does not fit with 507 in the endpoint's envelope, leaves no commit, no tag and no
 * chunk of it, gives the space back, and goes on serving and storing what fits. Mounting needs
 * root (CAP_SYS_ADMIN); elsewhere the test is skipped, saying why.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries } from '../support/trees.js';

const TMPFS_MIB = 48;

/** Mounts a tmpfs of `mib` MiB at `dir`; false when this process may not mount. */
function mountTmpfs(dir: string, mib: number): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const probe = await mkdtemp(join(tmpdir(), 'snapfork-mount-probe-'));
const canMount = mountTmpfs(probe, 1);
if (canMount) execFileSync('umount', [probe]);
await rm(probe, { recursive: true, force: true });
const skip = canMount ? undefined : 'mounting a tmpfs needs root (CAP_SYS_ADMIN)';
if (skip) console.warn(`disk-full test skipped: ${skip}`);

describe.skipIf(skip !== undefined)(`a full disk during a push${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string;
  let s: TestServer;
  let alice: string;
  let admin: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapfork-full-'));
    expect(mountTmpfs(dir, TMPFS_MIB)).toBe(true);
    // A directory inside the mount: the server's stop() removes its data directory, which a mount point cannot be.
    s = await startTestServer({}, { dataDir: join(dir, 'data') });
    alice = await s.token('alice');
    admin = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
  });
  afterAll(async () => {
    try {
      await s?.stop();
    } finally {
      if (dir) {
        execFileSync('umount', [dir]);
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  it('answers 507, stores nothing of the push, frees the space, and stores what fits afterwards', async () => {
    await s.createRepo(alice, 'data');
    const small = randomBytes(100 * 1024);
    await s.pushFiles(alice, 'alice/data', 'v1', { 'small.bin': small });
    const chunksBefore = s.chunkCount();
    const freeBefore = (await statfs(dir)).bfree;

    // Random bytes do not compress: twice the whole tmpfs cannot fit.
    const tooBig = await s.api('/api/v1/repos/alice/data/tags/big/archive', {
      method: 'PUT',
      token: alice,
      body: tarOfEntries([{ path: 'big.bin', body: randomBytes(2 * TMPFS_MIB * 1024 * 1024) }]),
      headers: { 'content-type': 'application/x-tar' },
    });
    expect(tooBig.status).toBe(507);
    expect(await tooBig.json()).toMatchObject({ error: expect.stringContaining('no space left'), success: false });

    expect((await s.api('/api/v1/repos/alice/data/tags/big', { token: alice })).status).toBe(404);
    expect(s.chunkCount()).toBe(chunksBefore);
    // The aborted push's temp packs are gone: the space is back (give or take a page of the databases).
    expect((await statfs(dir)).bfree).toBeGreaterThan(freeBefore - 64);
    const fsck = await s.api('/api/v1/admin/fsck', { method: 'POST', token: admin, json: { read_data: true } });
    expect(await fsck.json()).toMatchObject({ ok: true });

    const read = await s.api('/api/v1/repos/alice/data/tags/v1/files/small.bin', { token: alice });
    expect(Buffer.from(await read.arrayBuffer()).equals(small)).toBe(true);
    const fits = randomBytes(1024 * 1024);
    await s.pushFiles(alice, 'alice/data', 'v2', { 'fits.bin': fits });
  });
});
