/**
 * LocalDirBackend: the BlobBackend contract, and what the local directory adds (temp files
 * under tmp/, cleared at open; cached descriptors; names confined to its directory).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { LocalDirBackend } from '../../src/store/blobs/local-dir.js';
import type { BlobInfo } from '../../src/store/packs/blob-backend.js';
import { blobBackendContract } from './blob-backend.contract.js';

let root: string;
let backend: LocalDirBackend;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'snapfork-blobs-'));
  backend = await LocalDirBackend.open(root);
});
afterEach(async () => {
  await backend.close();
  await rm(root, { recursive: true, force: true });
});

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
const listed = async (prefix: string) => {
  const infos: BlobInfo[] = [];
  for await (const info of backend.list(prefix)) infos.push(info);
  return infos.map((i) => `${i.name}:${i.size}`).sort();
};

it('shows nothing of an upload before its commit, then the whole blob, durable in new directories', async () => {
  const upload = backend.create('packs/0a/one.pack');
  const data = bytes(5 * 1024 * 1024 + 17, 1); // more than one 4 MiB buffer
  await upload.write(data.subarray(0, 1000));
  await upload.write(data.subarray(1000));
  expect(await backend.stat('packs/0a/one.pack')).toBeUndefined();
  expect(await listed('packs/')).toEqual([]);
  await expect(backend.read('packs/0a/one.pack', 0, 10)).rejects.toMatchObject({ kind: 'not_found' });
  expect(await readdir(join(root, 'tmp'))).toEqual(['one.pack']);
  await upload.end!();
  expect(await backend.stat('packs/0a/one.pack')).toBeUndefined(); // ended is not committed
  await upload.commit();
  expect(await backend.stat('packs/0a/one.pack')).toMatchObject({ name: 'packs/0a/one.pack', size: data.length });
  expect(await readdir(join(root, 'tmp'))).toEqual([]);
  expect((await backend.read('packs/0a/one.pack', 0, data.length)).equals(data)).toBe(true);
  expect((await backend.read('packs/0a/one.pack', 4_000_000, 100)).equals(data.subarray(4_000_000, 4_000_100))).toBe(true);
  expect((await backend.read('packs/0a/one.pack', data.length - 5, 100)).equals(data.subarray(-5))).toBe(true); // short at the end
  await expect(upload.write(Buffer.from('more'))).rejects.toThrow();
});

it('discards an aborted upload, and the temp files of uploads never committed when it opens', async () => {
  const aborted = backend.create('packs/aa/aborted.pack');
  await aborted.write(bytes(100, 2));
  await aborted.abort();
  await aborted.abort(); // idempotent
  expect(await backend.stat('packs/aa/aborted.pack')).toBeUndefined();
  const dead = backend.create('packs/bb/dead.pack');
  await dead.write(bytes(100, 3));
  await dead.end!(); // written out, as a server would have before it died
  expect(await readdir(join(root, 'tmp'))).toEqual(['dead.pack']);
  const reopened = await LocalDirBackend.open(root);
  expect(await readdir(join(root, 'tmp'))).toEqual([]);
  expect(await reopened.stat('packs/bb/dead.pack')).toBeUndefined();
  await reopened.close();
});

it('lists committed blobs by prefix and deletes them idempotently', async () => {
  for (const [name, size] of [
    ['packs/01/a.pack', 10],
    ['packs/01/b.pack', 20],
    ['packs/02/c.pack', 30],
    ['other/d', 40],
  ] as const) {
    const upload = backend.create(name);
    await upload.write(bytes(size, size));
    await upload.commit();
  }
  expect(await listed('packs/')).toEqual(['packs/01/a.pack:10', 'packs/01/b.pack:20', 'packs/02/c.pack:30']);
  expect(await listed('packs/01/')).toEqual(['packs/01/a.pack:10', 'packs/01/b.pack:20']);
  expect(await listed('packs/01/b')).toEqual(['packs/01/b.pack:20']);
  expect(await listed('nothing/')).toEqual([]);
  expect(await backend.read('packs/01/a.pack', 0, 3)).toEqual(bytes(3, 10)); // through a cached descriptor ...
  expect(await backend.delete('packs/01/a.pack')).toBe(true);
  expect(await backend.delete('packs/01/a.pack')).toBe(false);
  await expect(backend.read('packs/01/a.pack', 0, 3)).rejects.toMatchObject({ kind: 'not_found' }); // ... forgotten
  expect(await listed('packs/')).toEqual(['packs/01/b.pack:20', 'packs/02/c.pack:30']);
});

it('refuses names outside its namespace', () => {
  for (const name of ['../escape', 'packs/../../x', '/abs', 'tmp/x.pack', '.hidden', 'Packs/X', 'packs//x', '']) {
    expect(() => backend.create(name), name).toThrow(/not a blob name/);
  }
});

const contractRoots: string[] = [];
blobBackendContract('local directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'snapfork-blobs-'));
  contractRoots.push(dir);
  return LocalDirBackend.open(dir);
});
afterAll(() => Promise.all(contractRoots.map((dir) => rm(dir, { recursive: true, force: true }))));
