/**
 * Tokens the server refuses (issues 10 §4, 11 §6 and 14): forgeries (`alg: none`, HMAC keyed
 * with the public key, another key, a tampered payload) and, signed with the server's own key
 * so that nothing but the rule under test can refuse them, times out of bounds (expired, `iat`
 * or `nbf` in the future, `exp` beyond the longest lifetime the server signs), another issuer
 * or audience, a subject or organization that is no valid name, a `kid` naming a key it does
 * not hold. Each is a 401 in the envelope of the dialect asked.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { base64url, exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT, UnsecuredJWT, type JWK, type JWTPayload } from 'jose';
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
  const alice = await s.token('alice');
  expect((await s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'pub', visibility: 'public' } })).status).toBe(201);
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

/** A read that any caller may make, in each dialect, with the 401 envelope of that dialect. */
const DIALECT_READS: { dialect: string; path: string; refused: unknown }[] = [
  { dialect: 'native', path: '/api/v1/repos/alice/pub', refused: REFUSED.body },
  { dialect: 'vers', path: '/api/v1/public/repositories/alice/pub', refused: REFUSED.body },
  { dialect: 'oxen', path: '/api/repos/alice/pub', refused: { status: 'error', status_message: expect.any(String), status_description: expect.any(String) } },
  { dialect: 'forge', path: '/api/v1/repos/alice/pub/forks', refused: REFUSED.body },
  { dialect: 'gitlab', path: '/api/v4/projects/alice%2Fpub', refused: { message: '401 Unauthorized' } },
  { dialect: 'gitverse', path: '/repos/alice/pub', refused: { message: expect.any(String), documentation_url: expect.any(String) } },
];

/** `token` with its payload replaced by `claims`, the signature kept. */
function tampered(token: string, claims: JWTPayload): string {
  const [header, payload, signature] = token.split('.');
  const changed = { ...(JSON.parse(new TextDecoder().decode(base64url.decode(payload!))) as JWTPayload), ...claims };
  return [header, base64url.encode(JSON.stringify(changed)), signature].join('.');
}

it('refuses forged, stale and misaddressed tokens with 401 in the envelope of every dialect', async () => {
  const { x, kid, kty, crv } = jwk;
  const publicJwk = JSON.stringify({ kty, crv, x, kid });
  const hmac = (secret: Uint8Array) =>
    new SignJWT({ scope: 'repo:read repo:write', sub: 'alice', iss: 'snapfork', aud: 'snapfork', iat: now(), exp: now() + HOUR })
      .setProtectedHeader({ alg: 'HS256', kid })
      .sign(secret);
  const otherKey = (await generateKeyPair('EdDSA')).privateKey;
  const forged: Record<string, string> = {
    'alg none': new UnsecuredJWT({ scope: 'repo:read' }).setSubject('alice').setIssuer('snapfork').setAudience('snapfork').setExpirationTime(now() + HOUR).encode(),
    // The HS/RS confusion: an HMAC keyed with the public key, in each form a verifier might hold it.
    'HS256 keyed with the public JWK': await hmac(new TextEncoder().encode(publicJwk)),
    'HS256 keyed with the raw public key': await hmac(base64url.decode(x!)),
    'HS256 keyed with the public PEM': await hmac(new TextEncoder().encode(await exportSPKI((await importJWK({ kty, crv, x }, 'EdDSA')) as Parameters<typeof exportSPKI>[0]))),
    'another key': await new SignJWT({ scope: 'repo:read', sub: 'alice', iss: 'snapfork', aud: 'snapfork', exp: now() + HOUR }).setProtectedHeader({ alg: 'EdDSA', kid }).sign(otherKey),
    'a tampered payload': tampered(await signed(), { sub: 'mallory' }),
    'a tampered scope': tampered(await s.token('alice', { scopes: ['repo:read'] }), { scope: 'repo:read repo:write' }),
    expired: await signed({ exp: now() - HOUR }),
    'not yet valid': await signed({ nbf: now() + HOUR }),
    'another audience': await signed({ aud: 'someone-else' }),
    'another issuer': await signed({ iss: 'evil' }),
    'an unknown kid': await signed({}, 'no-such-key'),
    'no JWT at all': 'not-a-jwt',
  };
  const seen: Record<string, Record<string, unknown>> = {};
  const expected: Record<string, Record<string, unknown>> = {};
  for (const [name, token] of Object.entries(forged)) {
    for (const { dialect, path, refused } of DIALECT_READS) {
      const res = await s.api(path, { token });
      (seen[name] ??= {})[dialect] = { status: res.status, body: await res.json() };
      (expected[name] ??= {})[dialect] = { status: 401, body: refused };
    }
  }
  expect(seen).toMatchObject(expected);
  // The same reads with a valid token, and with none, are answered.
  for (const token of [await signed(), undefined]) {
    for (const { path } of DIALECT_READS) expect({ path, status: (await s.api(path, { token })).status }).toEqual({ path, status: 200 });
  }
});

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
