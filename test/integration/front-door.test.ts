/**
 * The server's own front door (issue 11, section 7): the contract it enforces is published at
 * /openapi.json and /openapi.yaml, and a path no dialect holds answers snapfork's own 404, not
 * the body of GitVerse (mounted at the root for GitHub clients, but only under its own paths).
 */
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OPENAPI_DOCUMENT } from '../../src/http/contract.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

it('serves the contract it validates against, as written and as JSON', async () => {
  const written = readFileSync(OPENAPI_DOCUMENT, 'utf8');
  const yaml = await s.api('/openapi.yaml');
  expect(yaml.status).toBe(200);
  expect(yaml.headers.get('content-type')).toMatch(/^application\/yaml/);
  expect(await yaml.text()).toBe(written);
  const json = await s.api('/openapi.json');
  expect(json.status).toBe(200);
  expect(json.headers.get('content-type')).toMatch(/^application\/json/);
  const document = (await json.json()) as { paths: Record<string, unknown> };
  expect(document).toEqual(load(written));
  // The document describes itself, and is what the validator enforces: an operation it
  // lists answers, a parameter beyond its bounds is refused.
  expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/openapi.json', '/openapi.yaml', '/api/v1/repositories/fork']));
  expect((await s.api('/api/v1/public/repositories?limit=0')).status).toBe(400);
});

it("answers snapfork's own 404 for paths no dialect holds, the root included", async () => {
  const token = await s.token('alice');
  for (const path of ['/', '/nothing', '/index.html', '/reposx/a/b', '/apix', '/api/v1/no/such/route']) {
    for (const caller of [undefined, token]) {
      const res = await s.api(path, { token: caller });
      expect({ path, status: res.status, body: await errorBodyOf(res) }).toEqual({ path, status: 404, body: { error: 'not found', success: false } });
    }
  }
});

it("keeps each dialect's 404 under its own paths", async () => {
  const cases: [string, unknown][] = [
    ['/repos/alice/nothing/at/all', { message: 'Not Found', documentation_url: expect.stringMatching(/^https:/) }],
    ['/users/alice/nothing', { message: 'Not Found', documentation_url: expect.stringMatching(/^https:/) }],
    ['/api/v4/nothing', { message: '404 Not Found' }],
    ['/api/repos/alice/nothing/fork/status', { status: 'error', status_message: 'resource_not_found' }],
  ];
  for (const [path, body] of cases) {
    const res = await s.api(path);
    expect({ path, status: res.status, body: await res.json() }).toMatchObject({ path, status: 404, body });
  }
});
