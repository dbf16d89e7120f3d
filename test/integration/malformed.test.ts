/**
 * Bad input never gets a 5xx: every operation of openapi/snapfork.yaml, with hostile path
 * parameters, query strings and bodies, from an anonymous caller and from a signed-in one, must
 * answer below 500 (the test server also checks every answer against the document).
 */
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OPENAPI_DOCUMENT } from '../../src/http/contract.js';
import { startTestServer, type TestServer } from '../support/server.js';

interface Operation {
  method: string;
  path: string;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'];
const document = load(readFileSync(OPENAPI_DOCUMENT, 'utf8')) as { paths: Record<string, Record<string, unknown>> };
const operations: Operation[] = Object.entries(document.paths).flatMap(([path, item]) =>
  METHODS.filter((m) => m in item).map((method) => ({ method: method.toUpperCase(), path })),
);

const HOSTILE_SEGMENTS = ['..', '%00', 'x'.repeat(300), '%F0%9F%98%80', '-1', '99999999999999999999', "a'b", '%2e%2e%2f'];
const HOSTILE_BODIES: [string, string][] = [
  ['application/json', '{"unterminated": '],
  ['application/json', '[1, 2, 3]'],
  ['application/json', '{"name": {"$gt": ""}, "visibility": 7, "source_org": [], "tag_name": null, "digests": "x"}'],
  ['application/json', JSON.stringify({ name: 'n'.repeat(5000), description: '\u0000', is_public: 'yes', commit_id: 'not-a-uuid' })],
  ['application/x-tar', 'not a tar at all'],
  ['application/octet-stream', '\u0000\u0001\u0002'],
  ['text/plain', 'hello'],
];

let s: TestServer;
let token: string;
beforeAll(async () => {
  s = await startTestServer();
  token = await s.token('mallory', { org: 'mallory-org' });
  await s.api('/api/v1/user/repos', { method: 'POST', token, json: { name: 'target', visibility: 'public' } });
  await s.pushFiles(token, 'mallory/target', 'v1', { 'a.txt': 'a' });
});
afterAll(() => s.stop());

it(`answers every one of ${operations.length} operations below 500 whatever the input`, async () => {
  const failures: string[] = [];
  for (const { method, path } of operations) {
    for (const segment of HOSTILE_SEGMENTS) {
      const url = path.replace(/\{[^}]+\}\*?/g, segment) + '?page=-3&per_page=abc&limit=1e99&tag=%00&path=../../etc';
      const bodies: [string | undefined, string | undefined][] = method === 'GET' || method === 'DELETE' ? [[undefined, undefined]] : HOSTILE_BODIES;
      for (const [type, body] of bodies) {
        for (const caller of [undefined, token]) {
          const res = await s.api(url, { method, token: caller, body, headers: type ? { 'content-type': type } : {} });
          if (res.status >= 500) failures.push(`${method} ${url} (${type ?? 'no body'}) -> ${res.status} ${await res.text()}`);
          else await res.arrayBuffer();
        }
      }
    }
  }
  expect(failures).toEqual([]);
});
