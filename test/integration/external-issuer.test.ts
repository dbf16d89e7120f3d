import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

// An identity provider on loopback that publishes its JWKS, as an external issuer would.
let idp: Server;
let s: TestServer;
let sign: (claims: { iss?: string; aud?: string }) => Promise<string>;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
  idp = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
  const jwksUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`;
  s = await startTestServer({ SNAPFORK_JWKS_URL: jwksUrl, SNAPFORK_JWKS_ISSUER: 'https://idp.example', SNAPFORK_JWKS_AUDIENCE: 'snapfork-prod' });
  sign = (claims) =>
    new SignJWT({ scope: 'repo:read repo:write' })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
      .setSubject('frank')
      .setIssuer(claims.iss ?? 'https://idp.example')
      .setAudience(claims.aud ?? 'snapfork-prod')
      .setExpirationTime('10m')
      .sign(privateKey);
});
afterAll(async () => {
  await s.stop();
  idp.close();
});

it('accepts tokens of the configured external issuer and provisions their user', async () => {
  const res = await s.api('/api/v1/user', { token: await sign({}) });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ login: 'frank', type: 'User' });
});

it("rejects the external issuer's key under another issuer or audience", async () => {
  for (const claims of [{ iss: 'https://evil.example' }, { aud: 'someone-else' }]) {
    expect((await s.api('/api/v1/user', { token: await sign(claims) })).status).toBe(401);
  }
});

it('still accepts its own tokens', async () => {
  expect((await s.api('/api/v1/user', { token: await s.token('alice') })).status).toBe(200);
});
