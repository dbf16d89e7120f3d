/**
 * Operating it: liveness, readiness and Prometheus metrics over real HTTP, unauthenticated, with
 * label values bounded by the contract's route templates whatever paths clients send.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadContract } from '../../src/http/contract.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** One sample of the exposition: its metric name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function samples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

const valueOf = (all: Sample[], name: string) => all.find((s) => s.name === name && Object.keys(s.labels).length === 0)?.value;

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

async function scrape(server: TestServer = s): Promise<Sample[]> {
  const res = await server.api('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(await res.text());
}

describe('health', () => {
  it('answers /healthz with ok, without a token and despite a bad one', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-a-token' }] as Record<string, string>[]) {
      const res = await s.api('/healthz', { headers });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
  });

  it('answers /readyz with ready when the database and the chunk store answer', async () => {
    const res = await s.api('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { database: 'ok', chunks: 'ok' } });
  });
});

describe('metrics', () => {
  it('counts forks and chunk writes, and times requests by route template, never by concrete path', async () => {
    const alice = await s.token('alice');
    const bob = await s.token('bob');
    await s.createRepo(alice, 'cardinal-source', 'public');
    await s.pushFiles(alice, 'alice/cardinal-source', 'v1', { 'data.csv': 'a,b\n1,2\n', 'big.bin': Buffer.alloc(200_000, 7) });
    // The same files again: every chunk is already stored.
    await s.pushFiles(alice, 'alice/cardinal-source', 'v2', { 'data.csv': 'a,b\n1,2\n', 'big.bin': Buffer.alloc(200_000, 7) });
    const fork = await s.api('/api/v1/repos/alice/cardinal-source/forks', { method: 'POST', token: bob, json: { name: 'cardinal-fork' } });
    expect(fork.status).toBe(201);

    const all = await scrape();
    expect(valueOf(all, 'snapfork_forks_total')).toBe(1);
    expect(valueOf(all, 'snapfork_chunks_written_total')).toBeGreaterThan(0);
    expect(valueOf(all, 'snapfork_chunks_written_total')).toBe(s.chunkCount());
    expect(valueOf(all, 'snapfork_chunks_deduplicated_total')).toBeGreaterThan(0);
    expect(valueOf(all, 'snapfork_chunk_bytes_stored_total')).toBeGreaterThan(0);
    expect(valueOf(all, 'snapfork_vms_running')).toBe(0);
    expect(valueOf(all, 'http_request_bytes_total')).toBeGreaterThan(400_000);
    expect(valueOf(all, 'http_response_bytes_total')).toBeGreaterThan(0);
    expect(all.some((x) => x.name === 'process_cpu_user_seconds_total')).toBe(true);

    const forkTimings = all.filter((x) => x.name === 'http_request_duration_seconds_count' && x.labels.route === '/api/v1/repos/{owner}/{repo}/forks');
    expect(forkTimings).toEqual([{ name: 'http_request_duration_seconds_count', labels: { method: 'POST', route: '/api/v1/repos/{owner}/{repo}/forks', status: '201' }, value: 1 }]);
    const pushes = all.find((x) => x.name === 'http_request_duration_seconds_count' && x.labels.route === '/api/v1/repos/{owner}/{repo}/tags/{tag}/archive');
    expect(pushes).toMatchObject({ labels: { method: 'PUT', status: '201' }, value: 2 });
    // Cardinality: no label names a repository or a user that a client sent, and every route
    // label is a template of the contract.
    expect(all.filter((x) => Object.values(x.labels).some((v) => /cardinal|alice|bob/.test(v)))).toEqual([]);
    const templates = new Set([...Object.keys(loadContract().document.paths), 'unmatched']);
    expect(all.filter((x) => x.labels.route !== undefined && !templates.has(x.labels.route))).toEqual([]);
  });

  it('counts a request for a path the contract does not hold under route "unmatched"', async () => {
    const before = (await scrape()).find((x) => x.name === 'http_request_duration_seconds_count' && x.labels.route === 'unmatched' && x.labels.status === '404')?.value ?? 0;
    for (const path of ['/no/such/path-one', '/no/such/path-two', '/api/v1/repos/alice/x/no-such-thing']) {
      expect((await s.api(path)).status).toBe(404);
    }
    const after = await scrape();
    expect(after.find((x) => x.name === 'http_request_duration_seconds_count' && x.labels.route === 'unmatched' && x.labels.status === '404')).toMatchObject({
      labels: { method: 'GET' },
      value: before + 3,
    });
    expect(after.filter((x) => Object.values(x.labels).some((v) => v.includes('path-') || v.includes('no-such')))).toEqual([]);
  });

  it('keeps one registry per server: a second server in the same process counts its own', async () => {
    const other = await startTestServer();
    try {
      const theirs = await scrape(other);
      expect(valueOf(theirs, 'snapfork_forks_total')).toBe(0);
      expect(valueOf(await scrape(), 'snapfork_forks_total')).toBe(1);
    } finally {
      await other.stop();
    }
  });
});
