/**
 * Vers' VM API beyond exec (issue 12), over real HTTP with one real VM (QEMU, TCG) booted for the
 * whole file: metadata, files through the guest agent, exec streamed as NDJSON while the command
 * runs, the VM's exec log by byte offset, and replaying an exec stream by cursor.
 */
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectVersError, pushGuestRootDisk } from '../support/vers.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { buildVmAssets } from '../support/vm-assets.js';



const b64 = (data: string | Buffer) => Buffer.from(data).toString('base64');
const text = (data64: string) => Buffer.from(data64, 'base64').toString('utf8');

/** The lines of an NDJSON answer, parsed one by one as they arrive. */
async function* ndjsonLines(res: Response): AsyncGenerator<Record<string, unknown>> {
  const reader = res.body!.getReader();
  let pending = '';
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    for (let newline = pending.indexOf('\n'); newline !== -1; newline = pending.indexOf('\n')) {
      yield JSON.parse(pending.slice(0, newline)) as Record<string, unknown>;
      pending = pending.slice(newline + 1);
    }
  }
  expect(pending).toBe('');
}

async function allLines(res: Response): Promise<Record<string, unknown>[]> {
  const lines = [];
  for await (const line of ndjsonLines(res)) lines.push(line);
  return lines;
}

const TIMESTAMP = expect.stringMatching(/^\d{4}-\d\d-\d\dT/);

describe('a running VM: metadata, files, streamed exec, its log', () => {
  let s: TestServer;
  let labs: string;
  let bob: string;
  let commitId: string;
  let vm: string;

  const get = (path: string, token = labs) => s.api(`/api/v1/vm/${vm}${path}`, { token });
  const post = (path: string, json: unknown, token = labs) => s.api(`/api/v1/vm/${vm}${path}`, { method: 'POST', token, json });
  const put = (json: unknown, token = labs) => s.api(`/api/v1/vm/${vm}/files`, { method: 'PUT', token, json });
  const exec = async (command: string[], extra: Record<string, unknown> = {}) => {
    const res = await post('/exec', { command, ...extra });
    expect(res.status).toBe(200);
    return res.json();
  };
  const readFile = async (path: string) => {
    const res = await get(`/files?path=${encodeURIComponent(path)}`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(Object.keys(body)).toEqual(['content_b64']);
    return Buffer.from(body.content_b64, 'base64');
  };

  beforeAll(async () => {
    const assets = await buildVmAssets();
    s = await startTestServer({ SNAPFORK_VM_ASSETS: assets });
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    expect((await s.api('/api/v1/repositories', { method: 'POST', token: labs, json: { name: 'os' } })).status).toBe(201);
    commitId = await pushGuestRootDisk(s, assets, labs, 'labs/os:v1');
    const booted = await s.api('/api/v1/vm/from_commit', { method: 'POST', token: labs, json: { commit_id: commitId } });
    expect(booted.status).toBe(201);
    vm = (await booted.json()).vm_id;
  });
  afterAll(() => s?.stop());

  it('GET .../metadata answers the VM with its size and the commit it was started from; 404 to others', async () => {
    const res = await get('/metadata');
    expect(res.status).toBe(200);
    const status = await (await get('/status')).json();
    expect(await res.json()).toEqual({
      vm_id: vm,
      owner_id: status.owner_id,
      created_at: status.created_at,
      state: 'running',
      ip: null,
      vcpu_count: 1,
      mem_size_mib: 256,
      deleted_at: null,
      parent_commit_id: commitId,
      grandparent_vm_id: null,
    });
    await expectVersError(await get('/metadata', bob), 404, `vm ${vm} not found`);
    await expectVersError(await s.api(`/api/v1/vm/${randomUUID()}/metadata`, { token: labs }), 404);
  });

  it('PUT .../files writes bytes, mode and missing directories; GET .../files reads them back', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const written = await put({ path: '/root/deep/er/bytes.bin', content_b64: b64(bytes), mode: 0o640, create_dirs: true });
    expect(written.status).toBe(200);
    expect(await written.text()).toBe('');
    expect((await readFile('/root/deep/er/bytes.bin')).equals(bytes)).toBe(true);
    expect((await exec(['stat', '-c', '%a', '/root/deep/er/bytes.bin'])).stdout).toBe('640\n');

    // Replacing keeps the file's mode when none is given; a new file gets 0644; empty is fine.
    expect((await put({ path: '/root/deep/er/bytes.bin', content_b64: b64('second\n') })).status).toBe(200);
    expect((await readFile('/root/deep/er/bytes.bin')).toString()).toBe('second\n');
    expect((await put({ path: '/root/empty', content_b64: '' })).status).toBe(200);
    expect(await readFile('/root/empty')).toEqual(Buffer.alloc(0));
    expect((await exec(['stat', '-c', '%a', '/root/deep/er/bytes.bin', '/root/empty'])).stdout).toBe('640\n644\n');
    // Only the file itself changed: no temporary file is left beside it.
    expect((await exec(['ls', '-A', '/root/deep/er'])).stdout).toBe('bytes.bin\n');
    // What the guest wrote, the API reads.
    await exec(['sh', '-c', 'printf "from the guest" > /tmp/g.txt']);
    expect((await readFile('/tmp/g.txt')).toString()).toBe('from the guest');
  });

  it('files: 404 for a missing file or directory, 400 for a relative path or bad base64, 422 for a directory, 404 to others', async () => {
    await expectVersError(await get('/files?path=/root/nothing-here'), 404, '/root/nothing-here not found in the VM');
    await expectVersError(await put({ path: '/no/such/dir/f', content_b64: b64('x') }), 404, '/no/such/dir not found in the VM');
    await expectVersError(await get('/files?path=root/relative'), 400, 'path "root/relative" is not absolute');
    await expectVersError(await put({ path: 'relative', content_b64: b64('x') }), 400, 'path "relative" is not absolute');
    await expectVersError(await get('/files'), 400);
    await expectVersError(await put({ path: '/root/x', content_b64: 'not base64!' }), 400, 'content_b64 is not base64');
    await expectVersError(await put({ path: '/root/x', content_b64: b64('x'), mode: 0o10000 }), 400);
    await expectVersError(await get('/files?path=/root'), 422, /^\/root: Is a directory/);
    await expectVersError(await put({ path: '/root', content_b64: b64('x') }), 422, /\/root is a directory/);
    await expectVersError(await get('/files?path=/etc/hostname', bob), 404, `vm ${vm} not found`);
    await expectVersError(await put({ path: '/root/x', content_b64: b64('x') }, bob), 404, `vm ${vm} not found`);
    expect((await exec(['ls', '/root/x'])).exit_code).not.toBe(0);
  });

  it('files: 413 past 32 MiB, read no further; a larger body is refused before it is read', async () => {
    await exec(['truncate', '-s', String(32 * 1024 * 1024 + 1), '/tmp/big']);
    await expectVersError(await get('/files?path=/tmp/big'), 413, '/tmp/big is larger than 33554432 bytes, the most read whole');
    const tooBig = JSON.stringify({ path: '/tmp/x', content_b64: 'A'.repeat(Math.ceil((32 * 1024 * 1024 + 1) / 3) * 4 + 64 * 1024) });
    const res = await s.api(`/api/v1/vm/${vm}/files`, { method: 'PUT', token: labs, body: tooBig, headers: { 'content-type': 'application/json' } });
    await expectVersError(res, 413);
  });

  it('POST .../exec/stream hands output over while the command runs, then its exit code', async () => {
    // The command prints, then waits for a file that only this test creates, after it has the
    // first line: that line cannot have come from a command that had already exited.
    const res = await post('/exec/stream', {
      command: ['sh', '-c', 'echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second >&2; exit 7'],
      exec_id: 'stream-1',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const lines = ndjsonLines(res);
    const first = await lines.next();
    expect(first.value).toEqual({ timestamp: TIMESTAMP, stream: 'stdout', data_b64: b64('first\n'), exec_id: 'stream-1', cursor: 1 });
    expect((await put({ path: '/tmp/go', content_b64: '' })).status).toBe(200);
    const rest = [];
    for await (const line of lines) rest.push(line);
    expect(rest).toEqual([
      { timestamp: TIMESTAMP, stream: 'stderr', data_b64: b64('second\n'), exec_id: 'stream-1', cursor: 2 },
      { exec_id: 'stream-1', cursor: 2, exit_code: 7, timestamp: TIMESTAMP },
    ]);
  });

  it('exec/stream: refusals come before the stream (400, 404); a command killed at its timeout ends with 124', async () => {
    await expectVersError(await post('/exec/stream', { command: [] }), 400);
    await expectVersError(await post('/exec/stream', { command: ['echo', 'a\u0000b'] }), 400, 'a command argument holds a NUL character');
    await expectVersError(await post('/exec/stream', { command: ['true'] }, bob), 404);
    const lines = await allLines(await post('/exec/stream', { command: ['sh', '-c', 'echo t; exec sleep 1000'], timeout_secs: 1, exec_id: 'timed' }));
    expect(lines.map((l) => l.exit_code ?? text(l.data_b64 as string))).toEqual(['t\n', 124]);
  });

  it('a client that leaves the stream ends the command; what it printed stays in the log', async () => {
    const left = new AbortController();
    const res = await fetch(`${s.url}/api/v1/vm/${vm}/exec/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${labs}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command: ['sh', '-c', 'echo ready; exec sleep 1001'], exec_id: 'left' }),
      signal: left.signal,
    });
    expect((await ndjsonLines(res).next()).value).toMatchObject({ data_b64: b64('ready\n'), exec_id: 'left' });
    left.abort();
    // The server kills the command's process group and logs its end: wait for that end.
    let replayed: Record<string, unknown>[] = [];
    while (!replayed.some((line) => 'exit_code' in line)) replayed = await allLines(await post('/exec/stream/attach', { exec_id: 'left' }));
    expect(replayed).toEqual([
      { timestamp: TIMESTAMP, stream: 'stdout', data_b64: b64('ready\n'), exec_id: 'left', cursor: 1 },
      { exec_id: 'left', cursor: 1, exit_code: 137, timestamp: TIMESTAMP },
    ]);
    expect((await exec(['ps'])).stdout).not.toContain('sleep 1001');
  });

  it('exec/stream/attach replays one exec from a cursor (exclusive), or its exit alone; 404 for an exec the log does not hold', async () => {
    const all = await allLines(await post('/exec/stream/attach', { exec_id: 'stream-1' }));
    expect(all.map((l) => l.cursor)).toEqual([1, 2, 2]);
    expect(all[2]).toMatchObject({ exit_code: 7 });
    expect(await allLines(await post('/exec/stream/attach', { exec_id: 'stream-1', cursor: 1 }))).toEqual(all.slice(1));
    expect(await allLines(await post('/exec/stream/attach', { exec_id: 'stream-1', cursor: 2 }))).toEqual(all.slice(2));
    expect(await allLines(await post('/exec/stream/attach', { exec_id: 'stream-1', from_latest: true }))).toEqual(all.slice(2));
    await expectVersError(await post('/exec/stream/attach', { exec_id: 'never-ran' }), 404, `exec never-ran not found in the log of vm ${vm}`);
    await expectVersError(await post('/exec/stream/attach', { exec_id: 'stream-1' }, bob), 404, `vm ${vm} not found`);
    await expectVersError(await post('/exec/stream/attach', {}), 400);
  });

  it('GET .../logs pages through every exec\'s output by byte offset, of one stream or both', async () => {
    await exec(['sh', '-c', 'echo out-a; echo err-a >&2'], { exec_id: 'whole-a' });
    const whole = await (await get('/logs?max_entries=1000')).json();
    expect(whole.eof).toBe(true);
    const mine = whole.entries.filter((e: { exec_id: string }) => ['stream-1', 'whole-a'].includes(e.exec_id));
    expect(mine).toEqual([
      { timestamp: TIMESTAMP, stream: 'stdout', data_b64: b64('first\n'), exec_id: 'stream-1' },
      { timestamp: TIMESTAMP, stream: 'stderr', data_b64: b64('second\n'), exec_id: 'stream-1' },
      { timestamp: TIMESTAMP, stream: 'stdout', data_b64: b64('out-a\n'), exec_id: 'whole-a' },
      { timestamp: TIMESTAMP, stream: 'stderr', data_b64: b64('err-a\n'), exec_id: 'whole-a' },
    ]);
    // One entry at a time, continuing from next_offset, reads the same entries.
    const paged = [];
    for (let offset = 0, eof = false; !eof; ) {
      const page = await (await get(`/logs?offset=${offset}&max_entries=1`)).json();
      expect(page.entries.length).toBeLessThanOrEqual(1);
      expect(page.next_offset).toBeGreaterThan(offset);
      paged.push(...page.entries);
      ({ next_offset: offset, eof } = page);
    }
    expect(paged).toEqual(whole.entries);
    const stderr = await (await get('/logs?stream=stderr&max_entries=1000')).json();
    expect(stderr.entries.length).toBeGreaterThan(0);
    expect(stderr.entries.every((e: { stream: string }) => e.stream === 'stderr')).toBe(true);
    expect(await (await get(`/logs?offset=${whole.next_offset}`)).json()).toEqual({ entries: [], eof: true, next_offset: whole.next_offset });

    await expectVersError(await get('/logs?offset=-1'), 400);
    await expectVersError(await get('/logs?stream=both'), 400);
    await expectVersError(await get('/logs?max_entries=0'), 400);
    await expectVersError(await get('/logs', bob), 404, `vm ${vm} not found`);
  });

  it('deleting the VM removes its log', async () => {
    const logDir = join(s.dataDir, 'vm-logs', vm);
    expect((await stat(logDir)).isDirectory()).toBe(true);
    expect((await s.api(`/api/v1/vm/${vm}`, { method: 'DELETE', token: labs })).status).toBe(200);
    await expect(stat(logDir)).rejects.toMatchObject({ code: 'ENOENT' });
    await expectVersError(await get('/logs'), 404);
    await expectVersError(await get('/metadata'), 404);
  });
});
