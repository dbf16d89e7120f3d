/**
 * Operating it: the server's structured logs over real HTTP. Every line is JSON; every line of a
 * request and its answer carry one request id (the `X-Request-Id` header, and `request_id` in
 * the error body of every dialect); no token ever reaches the logs.
 */
import type { DestinationStream } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordHeader } from '../../src/lib/chunk-pack.js';
import { sha256 } from '../support/delta.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tempDir } from '../support/trees.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type LogLine = Record<string, any>;

/**
 * The server's log lines as written. A request's line is written as its answer ends, which the
 * client may see first: `completion` waits for it.
 */
class LogLines implements DestinationStream {
  readonly raw: string[] = [];
  private waiting: { requestId: string; resolve: (line: LogLine) => void }[] = [];

  write(text: string): void {
    this.raw.push(text);
    const line = parsed(text);
    if (line === undefined || !('status' in line)) return;
    for (const w of this.waiting.filter((w) => w.requestId === line.request_id)) w.resolve(line);
    this.waiting = this.waiting.filter((w) => w.requestId !== line.request_id);
  }

  /** The line that ended request `requestId`. */
  completion(requestId: string): Promise<LogLine> {
    const written = this.raw.map(parsed).find((line) => line?.request_id === requestId && 'status' in line);
    return written ? Promise.resolve(written) : new Promise((resolve) => this.waiting.push({ requestId, resolve }));
  }
}

function parsed(text: string): LogLine | undefined {
  try {
    return JSON.parse(text) as LogLine;
  } catch {
    return undefined;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PINO_INFO = 30;
const PINO_ERROR = 50;

let s: TestServer;
let logs: LogLines;
let alice: string;

beforeAll(async () => {
  logs = new LogLines();
  // No guest assets: a VM asked for is a 503, the server error this test can cause.
  s = await startTestServer({ SNAPFORK_VM_ASSETS: await tempDir() }, { logDestination: logs });
  alice = await s.token('alice');
  await s.createRepo(alice, 'data');
});
afterAll(() => s.stop());

describe('log lines', () => {
  it('are JSON, starting with the address the server listens on', async () => {
    expect((await s.api('/healthz')).status).toBe(200);
    expect(logs.raw.length).toBeGreaterThan(0);
    for (const text of logs.raw) {
      expect(text.endsWith('\n')).toBe(true);
      const line = parsed(text);
      expect(line, text).toBeDefined();
      expect(line).toMatchObject({ level: expect.any(Number), time: expect.any(String), msg: expect.any(String) });
    }
    expect(parsed(logs.raw[0]!)).toMatchObject({ level: PINO_INFO, url: s.url, data_dir: s.dataDir, msg: expect.stringContaining(`listening on ${s.url} `) });
  });

  it('say once how each request ended, under its id: method, path, route, status, duration and bytes', async () => {
    const res = await s.api('/api/v1/repos/alice/data', { token: alice });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id')!;
    expect(id).toMatch(UUID);
    const line = await logs.completion(id);
    expect(line).toMatchObject({
      level: PINO_INFO,
      request_id: id,
      method: 'GET',
      path: '/api/v1/repos/alice/data',
      route: '/api/v1/repos/{owner}/{repo}',
      status: 200,
      duration_ms: expect.any(Number),
    });
    expect(line.bytes_in).toBeGreaterThan(0);
    expect(line.bytes_out).toBeGreaterThan(Number(res.headers.get('content-length')));
    expect(logs.raw.map(parsed).filter((l) => l?.request_id === id && 'status' in l)).toHaveLength(1);
  });

  it('log a client error at info with its reason and no stack', async () => {
    const res = await s.api('/api/v1/repos/alice/nothing', { token: alice });
    expect(res.status).toBe(404);
    const line = await logs.completion(res.headers.get('x-request-id')!);
    expect(line).toMatchObject({ level: PINO_INFO, status: 404, error: expect.any(String) });
    expect(line).not.toHaveProperty('err');
  });

  it('log answers given before their body was read whole: a JSON body too large, a chunk pack refused at its first record', async () => {
    const tooLarge = await s.api('/api/v1/user/repos', { method: 'POST', token: alice, body: `{"name": "${'x'.repeat(2 * 1024 * 1024)}"}`, headers: { 'content-type': 'application/json' } });
    expect(tooLarge.status).toBe(413);
    expect(await logs.completion(tooLarge.headers.get('x-request-id')!)).toMatchObject({ level: PINO_INFO, status: 413, route: '/api/v1/user/repos' });
    // An empty chunk's record: the pack's reader stops there, with the rest of the body unread.
    const emptyRecord = recordHeader(sha256(Buffer.alloc(0)), 0);
    const pack = await s.api('/api/v1/repos/alice/data/chunks', { method: 'POST', token: alice, body: Buffer.concat(Array.from({ length: 50_000 }, () => emptyRecord)), headers: { 'content-type': 'application/octet-stream' } });
    expect(pack.status).toBe(400);
    expect(await logs.completion(pack.headers.get('x-request-id')!)).toMatchObject({ level: PINO_INFO, status: 400, route: '/api/v1/repos/{owner}/{repo}/chunks' });
  });

  it('log a server error at error with the error and its stack, under the id its answer names', async () => {
    const res = await s.api('/api/v1/vm/new_root', { method: 'POST', token: alice, json: { vm_config: {} } });
    expect(res.status).toBe(503);
    const body = await res.json();
    const id = res.headers.get('x-request-id')!;
    expect(body.request_id).toBe(id);
    const line = await logs.completion(id);
    expect(line).toMatchObject({ level: PINO_ERROR, status: 503, route: '/api/v1/vm/new_root', err: { message: expect.stringContaining('guest assets') } });
    expect(line.err.stack).toMatch(/\n\s+at /);
  });

  it('never hold a token, however it was sent, good or bad', async () => {
    const forged = `${alice.slice(0, -4)}AAAA`;
    const sent = [
      await s.api('/api/v1/user', { token: alice }),
      await s.api('/api/v4/projects/alice%2Fdata', { headers: { 'private-token': alice } }),
      await s.api(`/api/v4/projects/alice%2Fdata?private_token=${alice}`),
      await s.api('/repos/alice/data', { headers: { authorization: `token ${alice}` } }),
      await s.api('/api/v1/user', { token: forged }),
      await s.api('/api/v1/vm/new_root', { method: 'POST', token: alice, json: { vm_config: {} } }),
    ];
    // Our GitLab dialect reads no token from the query: that one asks anonymously (404), and its query is never logged.
    expect(sent.map((r) => r.status)).toEqual([200, 200, 404, 200, 401, 503]);
    for (const res of sent) await logs.completion(res.headers.get('x-request-id')!);
    const all = logs.raw.join('');
    for (const secret of [alice, forged, alice.split('.')[2]!, forged.split('.')[2]!]) expect(all).not.toContain(secret);
    expect(all).not.toMatch(/bearer/i);
  });
});

describe('the request id', () => {
  it("is the caller's X-Request-Id when it is safe: in the header, the error body and the log line", async () => {
    const asked = 'trace-42.a:b_C';
    const res = await s.api('/api/v1/repositories/nothing', { token: alice, headers: { 'x-request-id': asked } });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-request-id')).toBe(asked);
    expect(await res.json()).toEqual({ error: expect.any(String), success: false, request_id: asked });
    expect(await logs.completion(asked)).toMatchObject({ request_id: asked, status: 404, route: '/api/v1/repositories/{repo_name}' });
  });

  it('is a new UUID when the caller sends one too long or with other characters', async () => {
    for (const asked of ['a'.repeat(129), 'has space', 'semi;colon', '"quoted"', 'line\\nbreak', '']) {
      const res = await s.api('/api/v1/repositories/nothing', { token: alice, headers: { 'x-request-id': asked } });
      const id = res.headers.get('x-request-id')!;
      expect(id, asked).toMatch(UUID);
      expect((await res.json()).request_id).toBe(id);
      expect((await logs.completion(id)).status).toBe(404);
    }
    // The longest kept.
    const longest = 'b'.repeat(128);
    expect((await s.api('/healthz', { headers: { 'x-request-id': longest } })).headers.get('x-request-id')).toBe(longest);
  });

  it('is in the error body of every dialect, equal to the header', async () => {
    const cases: [string, Record<string, string>, number, Record<string, unknown>][] = [
      // Vers (and snapfork's own /api/v1)
      ['/api/v1/repositories/nothing', { authorization: `Bearer ${alice}` }, 404, { error: expect.any(String), success: false }],
      ['/api/v1/repos/alice/nothing', {}, 404, { error: expect.any(String), success: false }],
      // GitLab: its model's 404, and a parameter the validator refuses
      ['/api/v4/projects/alice%2Fnothing', {}, 404, { message: '404 Project Not Found' }],
      ['/api/v4/projects/alice%2Fdata/forks?per_page=many', {}, 400, { error: expect.any(String) }],
      // GitHub-shaped (GitVerse)
      ['/repos/alice/nothing', {}, 404, { message: 'Not Found', documentation_url: expect.any(String) }],
      // Oxen
      ['/api/repos/alice/nothing', {}, 404, { status: 'error', status_message: 'resource_not_found', oxen_version: expect.any(String), status_description: expect.any(String) }],
      // A bad token, and a path no dialect holds
      ['/api/v1/user', { authorization: 'Bearer not-a-token' }, 401, { error: expect.any(String), success: false }],
      ['/nowhere/at/all', {}, 404, { error: 'not found', success: false }],
    ];
    for (const [path, headers, status, envelope] of cases) {
      const res = await s.api(path, { headers });
      expect(res.status, path).toBe(status);
      const id = res.headers.get('x-request-id')!;
      expect(id, path).toMatch(UUID);
      expect(await res.json(), path).toEqual({ ...envelope, request_id: id });
      expect((await logs.completion(id)).status, path).toBe(status);
    }
  });

  it('is on every answer, the operators\' endpoints too', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/.well-known/jwks.json']) {
      const res = await s.api(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('x-request-id'), path).toMatch(UUID);
    }
  });
});
