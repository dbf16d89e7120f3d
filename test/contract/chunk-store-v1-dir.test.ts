/**
 * A chunk directory written by the code before issue 13's split (FsChunkStore of commit
 * 64e2a62, one class over the local disk) opens and reads unchanged with today's composition
 * (LocalDirBackend + SqliteChunkIndex). The fixture fixtures/chunks-v1/ was written by that
 * code, built from `git archive 64e2a62`: one writer put text(70000, 1), keystream(40000, 2)
 * and an empty chunk, a second writer text(30000, 3) and keystream(20000, 4), then a chunk
 * put and deleted again (its pack came and went); LOCK and the empty tmp/ and fan-out
 * directories are not kept (git stores no empty directory), and its index.db is kept as the
 * SQL dump index.sql (sqlite3 .dump, user_version added), loaded into index.db for each test.
 */
import { createCipheriv } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sha256 } from '../../src/lib/sha256.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'chunks-v1');
const text = (n: number, seed: number) => Buffer.from(`chunk ${seed} `.repeat(n)).subarray(0, n);
const keystream = (n: number, seed: number) => createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16)).update(Buffer.alloc(n));
const stored = [text(70_000, 1), keystream(40_000, 2), Buffer.alloc(0), text(30_000, 3), keystream(20_000, 4)];

let root: string;
let dir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'snapfork-v1-'));
  dir = join(root, 'chunks');
  await cp(FIXTURE, dir, { recursive: true, filter: (source) => !source.endsWith('.sql') });
  const index = new BetterSqlite3(join(dir, 'index.db'));
  try {
    index.exec(await readFile(join(FIXTURE, 'index.sql'), 'utf8'));
  } finally {
    index.close();
  }
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const schemaOf = (file: string) => {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return { version: db.pragma('user_version', { simple: true }), tables: db.prepare('SELECT type, name, sql FROM sqlite_master ORDER BY name').all() as { type: string; name: string; sql: string }[] };
  } finally {
    db.close();
  }
};

it('opens a chunk directory written before the split, reads every chunk, and upgrades its index to format 2 in place', async () => {
  const before = schemaOf(join(dir, 'index.db'));
  const store = await openFsChunkStore(dir);
  try {
    expect(await store.count()).toBe(stored.length);
    for (const data of stored) expect((await store.get(sha256(data))).equals(data)).toBe(true);
    expect(await store.missing(stored.map(sha256))).toEqual([]);
    expect(await store.stat(sha256(stored[0]!))).toMatchObject({ compression: 'zstd', size: 70_000 });
    expect(await store.stat(sha256(stored[1]!))).toMatchObject({ compression: 'none', storedSize: 40_000 });
    expect(await store.has(sha256(text(1000, 5)))).toBe(false); // deleted by the old code
    // Both packs were known to the old index: none is taken for an orphan.
    expect((await readdir(join(dir, 'packs'), { recursive: true })).filter((f) => f.endsWith('.pack')).sort()).toEqual([
      join('2c', '2c977e4a8cfbadbb12501001d8417553.pack'),
      join('e3', 'e305f0408f6b2966fad998af408b8c6d.pack'),
    ]);
    // New writes land beside the old ones, deduplicated against them.
    expect((await store.put(stored[3]!)).created).toBe(false);
    const added = await store.put(text(5000, 6));
    expect(added.created).toBe(true);
    // Packs of format 1 had no time: they count as old (0); a new pack has its own.
    const ages = new Map((await store.entries('', 100)).map((e) => [e.digest, e.storedAt]));
    expect(ages.get(sha256(stored[0]!))).toBe(0);
    expect(ages.get(added.digest)).toBeGreaterThan(0);
    expect(await store.delete(sha256(stored[0]!))).toBe(true);
  } finally {
    await store.close();
  }
  // Format 2 only adds packs.created_at; the chunks table is as it was.
  const after = schemaOf(join(dir, 'index.db'));
  expect(after.version).toBe(2);
  expect(after.tables.filter((t) => t.name !== 'packs')).toEqual(before.tables.filter((t) => t.name !== 'packs'));
  expect(after.tables.find((t) => t.name === 'packs')).toMatchObject({ sql: expect.stringContaining('created_at INTEGER NOT NULL DEFAULT 0') });
  const reopened = await openFsChunkStore(dir);
  try {
    expect(await reopened.count()).toBe(stored.length);
    expect((await reopened.get(sha256(text(5000, 6)))).equals(text(5000, 6))).toBe(true);
    expect((await reopened.get(sha256(stored[1]!))).equals(stored[1]!)).toBe(true);
  } finally {
    await reopened.close();
  }
});
