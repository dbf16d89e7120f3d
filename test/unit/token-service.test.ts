import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { TokenService } from '../../src/auth/token-service.js';
import { loadConfig } from '../../src/config.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';
import type { MetadataStore } from '../../src/store/types.js';

let dir: string;
let store: MetadataStore;
let tokens: TokenService;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapfork-tokens-'));
  store = await openSqliteMetadataStore(join(dir, 'snapfork.db'));
  tokens = await TokenService.open(loadConfig({}, { dataDir: dir }), store);
  vi.useFakeTimers({ toFake: ['Date'] });
});

afterEach(async () => {
  vi.useRealTimers();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

it('takes a token it verified before for a while, never past its expiry', async () => {
  const token = await tokens.sign({ sub: 'alice', scopes: ['repo:read'], ttlSeconds: 10 });
  // 30 s past its expiry, within the 60 s of clock skew: still valid, and remembered.
  vi.setSystemTime(Date.now() + 40_000);
  expect(await tokens.verify(token)).toMatchObject({ sub: 'alice', scopes: ['repo:read'] });
  vi.setSystemTime(Date.now() + 20_000);
  expect(await tokens.verify(token)).toMatchObject({ sub: 'alice' });
  // 31 s later it is past expiry and skew, though verified less than a minute ago: refused.
  vi.setSystemTime(Date.now() + 11_000);
  await expect(tokens.verify(token)).rejects.toMatchObject({ kind: 'unauthorized' });
});

it('hands each caller claims of its own', async () => {
  const token = await tokens.sign({ sub: 'alice', scopes: ['repo:read'], ttlSeconds: 120 });
  (await tokens.verify(token)).scopes.push('admin');
  expect((await tokens.verify(token)).scopes).toEqual(['repo:read']);
});

it('remembers no token that failed', async () => {
  const token = await tokens.sign({ sub: 'alice', scopes: [], ttlSeconds: 120 });
  const forged = `${token.slice(0, -4)}AAAA`;
  await expect(tokens.verify(forged)).rejects.toMatchObject({ kind: 'unauthorized' });
  await expect(tokens.verify(forged)).rejects.toMatchObject({ kind: 'unauthorized' });
});
