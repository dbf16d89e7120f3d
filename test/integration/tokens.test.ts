/**
 * Tokens the server refuses although their signature verifies (issues 10 §4 and 11 §6): times
 * out of bounds (`iat` or `nbf` in the future, `exp` beyond the longest lifetime the server
 * signs), a subject or organization that is no valid name, a `kid` naming a key it does not hold.
 * Each is signed with the server's own key, so nothing but the rule under test can refuse it.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MAX_TOKEN_TTL_SECONDS } from '../../src/auth/token-service.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tempDir } from '../support/trees.js';

let s: TestServer;
let jwk: JWK;
let key: Awaited<ReturnType<typeof importJWK>>;
const HOUR = 3600;
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  s = await startTestServer();
  jwk = s.signingKey();
  key = await importJWK(jwk, 'EdDSA');
});
afterAll(() => s.stop());

/** A token signed with the server's key: valid for an hour unless `claims` or `kid` say otherwise. */
function signed(claims: JWTPayload = {}, kid: string | undefined = jwk.kid): Promise<string> {
  const t = now();
  return new SignJWT({ scope: 'repo:read repo:write', sub: 'alice', iss: 'snapfork', aud: 'snapfork', iat: t, exp: t + HOUR, ...claims })
    .setProtectedHeader({ alg: 'EdDSA', ...(kid === undefined ? {} : { kid }) })
    .sign(key);
}

async function statusOf(token: string): Promise<{ status: number; body: unknown }> {
  const res = await s.api('/api/v1/user', { token });
  return { status: res.status, body: await res.json() };
}

const REFUSED = { status: 401, body: { error: expect.any(String), success: false } };

it('accepts a well-formed token, with or without a kid, and one issued at the longest lifetime', async () => {
  expect((await statusOf(await signed())).status).toBe(200);
  expect((await statusOf(await signed({}, undefined))).status).toBe(200);
  expect((await statusOf(await signed({ exp: now() + MAX_TOKEN_TTL_SECONDS }))).status).toBe(200);
  // A clock a few seconds ahead of ours is not an attack.
  expect((await statusOf(await signed({ iat: now() + 10, nbf: now() + 10 }))).status).toBe(200);
});

it('refuses iat or nbf in the future and exp beyond the longest lifetime it signs', async () => {
  for (const claims of [{ iat: now() + HOUR }, { nbf: now() + HOUR }, { exp: now() + MAX_TOKEN_TTL_SECONDS + HOUR }, { exp: now() + 100 * 365 * 24 * HOUR }]) {
    expect({ claims, ...(await statusOf(await signed(claims))) }).toMatchObject({ claims, ...REFUSED });
  }
});

it('answers 401, not 400, for a subject or organization that is no valid name', async () => {
  for (const claims of [{ sub: 'a b' }, { sub: '../alice' }, { sub: 'x'.repeat(200) }, { sub: '-alice' }, { org: 'a/b' }, { org: '..' }]) {
    expect({ claims, ...(await statusOf(await signed(claims))) }).toMatchObject({ claims, ...REFUSED });
  }
});

it("refuses a token whose kid names a key it does not hold, though the server's key verifies it", async () => {
  for (const kid of ['someone-elses-key', `${jwk.kid}x`, '']) {
    expect({ kid, ...(await statusOf(await signed({}, kid))) }).toMatchObject({ kid, ...REFUSED });
  }
});

it('does not sign a token for longer than the longest lifetime', async () => {
  await expect(s.token('alice', { ttlSeconds: MAX_TOKEN_TTL_SECONDS + 1 })).rejects.toThrow(/lifetime/);
});

it("keeps the key a server of an older release kept in its data directory: that server's tokens stay valid", async () => {
  const dataDir = await tempDir();
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const legacy = { ...(await exportJWK(privateKey)), kid: 'legacy-key' };
  await writeFile(join(dataDir, 'signing-key.jwk'), JSON.stringify(legacy), { mode: 0o600 });
  const old = await startTestServer({}, { dataDir });
  try {
    expect(old.signingKey()).toEqual(legacy);
    const t = now();
    const token = await new SignJWT({ scope: 'repo:read', sub: 'alice', iss: 'snapfork', aud: 'snapfork', iat: t, exp: t + HOUR })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'legacy-key' })
      .sign(await importJWK(legacy, 'EdDSA'));
    expect((await old.api('/api/v1/user', { token })).status).toBe(200);
  } finally {
    await old.stop();
  }
});
