import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { progress } from '../../src/cli/command.js';
import { UsageError } from '../../src/cli/errors.js';
import { formatBytes, formatTable } from '../../src/cli/format.js';
import { run } from '../../src/cli/main.js';
import { parseReference, parseRepoPath } from '../../src/cli/reference.js';
import { parseTtl } from '../../src/cli/ttl.js';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/main.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';
import { buildVmAssets } from '../support/vm-assets.js';

type Env = Record<string, string | undefined>;

const execFileAsync = promisify(execFile);

/** A Writable that keeps what is written; `tty` makes it look like a terminal. */
function sink(tty = false): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return Object.assign(w, { isTTY: tty, text: () => Buffer.concat(chunks).toString('utf8') });
}

async function cli(argv: string[], env: Env = {}, tty = false, stdin?: Readable) {
  const stdout = sink(tty);
  const stderr = sink();
  const code = await run(argv, { stdin, stdout, stderr, env, now: Date.now });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

describe('parseArgs', () => {
  const specs = {
    message: { type: 'string' },
    scope: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  } as const;

  it('reads positionals, --flag value, --flag=value, repeated flags and booleans', () => {
    const parsed = parseArgs(
      ['a', '--message', 'hi there', 'b', '--scope=x', '--scope', 'y', '--json', '--', '--not-a-flag'],
      specs,
    );
    expect(parsed).toEqual({
      positionals: ['a', 'b', '--not-a-flag'],
      flags: { message: 'hi there', scope: ['x', 'y'], json: true },
      help: false,
    });
  });

  it('defaults absent flags and accepts values that look like flags after =', () => {
    expect(parseArgs(['--message=--dash', '-'], specs)).toEqual({
      positionals: ['-'],
      flags: { message: '--dash', scope: [], json: false },
      help: false,
    });
    expect(parseArgs(['--message', '-1'], specs).flags.message).toBe('-1');
  });

  it('sees --help and -h', () => {
    expect(parseArgs(['x', '--help'], specs).help).toBe(true);
    expect(parseArgs(['-h'], specs).help).toBe(true);
  });

  it.each([
    [['--nope'], 'unknown option --nope'],
    [['-x'], 'unknown option -x'],
    [['--message'], 'option --message needs a value'],
    [['--message', '--json'], 'option --message needs a value'],
    [['--json=yes'], 'option --json takes no value'],
    [['--message', 'a', '--message', 'b'], 'option --message given twice'],
  ])('rejects %j as a usage error', (argv, message) => {
    const fn = () => parseArgs(argv, specs);
    expect(fn).toThrow(UsageError);
    expect(fn).toThrow(message);
  });
});

describe('references', () => {
  it('parses owner/repo:tag', () => {
    expect(parseReference('alice/data:v1.0_rc-2')).toEqual({ owner: 'alice', repo: 'data', tag: 'v1.0_rc-2' });
    expect(parseReference(`a/b:${'t'.repeat(64)}`).tag).toHaveLength(64);
    expect(parseRepoPath('acme/models')).toEqual({ owner: 'acme', repo: 'models' });
  });

  const bad = ['alice/data', 'alice/data:', '/data:v1', 'alice/:v1', 'a/b/c:v1', 'a/b:v 1', 'a/b:v/1'];
  bad.push(`a/b:${'t'.repeat(65)}`);
  it.each(bad)('rejects %j naming the expected form', (text) => {
    expect(() => parseReference(text)).toThrow(UsageError);
    expect(() => parseReference(text)).toThrow('expected owner/repo:tag');
  });

  it('rejects a bad owner/repo', () => {
    expect(() => parseRepoPath('alice')).toThrow('expected owner/repo');
    expect(() => parseRepoPath('a/b/c')).toThrow('expected owner/repo');
  });
});

describe('parseTtl', () => {
  it.each([
    ['30s', 30],
    ['15m', 900],
    ['1h', 3600],
    ['7d', 604800],
    ['3600', 3600],
  ])('%s is %d seconds', (text, seconds) => expect(parseTtl(text)).toBe(seconds));

  it.each(['', '0', '0h', '-5', '1.5h', '1w', 'h', '10 m'])('rejects %j', (text) => {
    expect(() => parseTtl(text)).toThrow(UsageError);
  });
});

describe('formatting', () => {
  it('formats sizes in binary units', () => {
    expect([0, 512, 1024, 1536, 12 * 1024 ** 2, 1024 ** 3].map(formatBytes)).toEqual([
      '0 B',
      '512 B',
      '1.0 KiB',
      '1.5 KiB',
      '12.0 MiB',
      '1.0 GiB',
    ]);
  });

  it('aligns table columns', () => {
    expect(formatTable(['A', 'B'], [['long', 'x'], ['s', 'yy']])).toBe('A     B\nlong  x\ns     yy');
  });
});

describe('progress', () => {
  const io = (tty: boolean, now = () => 0) => ({ stdout: sink(tty), stderr: sink(), env: {}, now });

  it('draws on stderr when stdout is a TTY, at most once per 100 ms of its clock, with the rate by that clock', () => {
    let time = 1_000_000;
    const shown = io(true, () => time);
    const meter = progress(shown, false, 'push a/b:c', 4000);
    for (let i = 0; i < 500; i++) meter.add(4); // one instant: drawn once, at the first
    time += 99;
    meter.add(4); // 99 ms after the last line: not drawn
    time += 1;
    for (let i = 0; i < 499; i++) meter.add(4); // 100 ms: drawn once more, at the first
    time += 1900;
    meter.finish();
    expect(shown.stderr.text()).toBe(
      [
        '\rpush a/b:c 4 B / 3.9 KiB (0%)  3.9 KiB/s\x1b[K', // at 0 ms the rate's divisor is 1 ms
        '\rpush a/b:c 2.0 KiB / 3.9 KiB (50%)  19.6 KiB/s\x1b[K',
        '\rpush a/b:c 3.9 KiB / 3.9 KiB (100%)  2.0 KiB/s\x1b[K\n',
      ].join(''),
    );
    expect(shown.stdout.text()).toBe('');
  });

  it('stays silent without a TTY or with --json', () => {
    for (const [tty, json] of [
      [false, false],
      [true, true],
    ] as const) {
      const target = io(tty);
      const meter = progress(target, json, 'x', 10);
      meter.add(10);
      meter.finish();
      expect(meter.bytes).toBe(10);
      expect(target.stderr.text()).toBe('');
    }
  });
});

describe('run', () => {
  it('prints usage: --help on stdout (0), nothing at all on stderr (2)', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('token create');
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: snapfork');
  });

  it('prints per-command help', async () => {
    const r = await cli(['push', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: snapfork push <dir\|file> <owner\/repo:tag> \[--message M\]/);
    const exec = await cli(['vm', 'exec', '--help']);
    expect(exec.code).toBe(0);
    expect(exec.stdout.split('\n')[0]).toBe(
      'usage: snapfork vm exec <vm_id> [--env K=V]... [--workdir DIR] [--timeout SECS] [--json] [--url U] [--token T] -- <command...>',
    );
  });

  it.each([
    [['frobnicate'], 'snapfork: unknown command "frobnicate" (see snapfork --help)\n'],
    [['token', 'delete'], 'snapfork: unknown command "token delete" (see snapfork --help)\n'],
    [['push', 'dir'], 'snapfork: push: missing <owner/repo:tag> (usage: '],
    [['pull', 'alice/data', 'out'], 'snapfork: bad reference "alice/data": expected owner/repo:tag'],
    [['tags', 'a/b', 'c'], 'snapfork: tags: unexpected argument "c"'],
    [['token', 'create', '--user', 'alice', '--scope', 'root'], 'snapfork: bad --scope "root"'],
    [['token', 'create', '--user', 'alice', '--scope', 'repo:read root'], 'snapfork: bad --scope "root"'],
    [['token', 'create', '--user', 'alice', '--ttl', '1y'], 'snapfork: bad --ttl "1y"'],
    [['token', 'create'], 'snapfork: token create: --user LOGIN is required\n'],
    [['push', '.', 'a/b:c', '--visibility', 'secret'], 'snapfork: bad --visibility "secret"'],
    [['tags', 'a/b', '--url', 'ftp://x'], 'snapfork: bad server URL "ftp://x"'],
    [['vm', 'frob'], 'snapfork: unknown command "vm frob" (see snapfork --help)\n'],
    [['vm', 'new', 'x'], 'snapfork: vm new: unexpected argument "x"'],
    [['vm', 'new', '--vcpus', '1.5'], 'snapfork: bad --vcpus "1.5": expected a whole number of vCPUs\n'],
    [['vm', 'new', '--mem', '0'], 'snapfork: bad --mem "0": expected whole MiB\n'],
    [['vm', 'new', '--disk', '-1'], 'snapfork: bad --disk "-1": expected whole MiB\n'],
    [['vm', 'new', '--label', 'role'], 'snapfork: bad --label "role": expected NAME=VALUE\n'],
    [['vm', 'new', '--no-wait=yes'], 'snapfork: option --no-wait takes no value\n'],
    [['vm', 'branch'], 'snapfork: vm branch: missing <vm-id|commit-id|[owner/]repo:tag> (usage: snapfork vm branch'],
    [['vm', 'branch', 'id', '--count', '0'], 'snapfork: bad --count "0": expected a whole number of VMs, at least 1\n'],
    [['vm', 'branch', 'id', '--count', 'two'], 'snapfork: bad --count "two"'],
    [['vm', 'branch', 'os:v1', '--keep-paused'], 'snapfork: --keep-paused applies to a VM, not a tag\n'],
    [['vm', 'branch', 'os:v1:x'], 'snapfork: bad reference "os:v1:x": expected repo:tag'],
    [['vm', 'branch', 'a/b/c:v1'], 'snapfork: bad reference "a/b/c:v1": expected owner/repo:tag'],
    [['vm', 'commit'], 'snapfork: vm commit: missing <vm-id>'],
    // Refused before the commit is made (no server answers here: a request would exit 1).
    [['vm', 'commit', 'id', '--tag', 'alice/os:v2'], 'snapfork: bad reference "alice/os:v2": expected repo:tag'],
    [['vm', 'commit', 'id', '--tag', 'os'], 'snapfork: bad reference "os": expected repo:tag'],
    [['vm', 'ls', 'x'], 'snapfork: vm ls: unexpected argument "x"'],
    [['vm', 'from'], 'snapfork: vm from: missing <[owner/]repo:tag|commit-id>'],
    [['vm', 'from', 'a/b/c:v1'], 'snapfork: bad reference "a/b/c:v1": expected owner/repo:tag'],
    [['vm', 'rm'], 'snapfork: vm rm: missing <vm_id>'],
    [['vm', 'exec', 'id'], 'snapfork: vm exec: missing <command...> (usage: snapfork vm exec <vm_id> [--env K=V]...'],
    [['vm', 'exec', 'id', '--env', 'NOEQ', '--', 'true'], 'snapfork: bad --env "NOEQ": expected NAME=VALUE\n'],
    [['vm', 'exec', 'id', '--env', '=v', '--', 'true'], 'snapfork: bad --env "=v"'],
    [['vm', 'exec', 'id', '--timeout', '1.5', '--', 'true'], 'snapfork: bad --timeout "1.5"'],
  ])('%j is a one-line usage error (exit 2)', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(message)).toBe(true);
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(r.stdout).toBe('');
  });

  it('says when no server answers', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as { port: number };
        probe.close(() => resolve(free));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const r = await cli(['tags', 'alice/data'], { SNAPFORK_URL: url, SNAPFORK_TOKEN: 't' });
    expect(r).toEqual({ code: 1, stdout: '', stderr: `snapfork: cannot reach ${url} (is the server running?)\n` });
  });

  it('reports a missing source before any request', async () => {
    const r = await cli(['push', '/nonexistent/snapfork', 'a/b:c', '--url', 'http://127.0.0.1:1']);
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'snapfork: /nonexistent/snapfork: no such file or directory\n' });
  });
});

/**
 * The tree every round trip pushes: a regular, an empty and a 3 MiB random file, an empty
 * directory, symlinks (one dangling), mode 0755, an old mtime, spaces and UTF-8 in names.
 */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'empty dir'), { recursive: true });
  await mkdir(join(root, 'nested/deeper'), { recursive: true });
  await writeFile(join(root, 'hello.txt'), 'hello world\n');
  await writeFile(join(root, 'empty.bin'), '');
  await writeFile(join(root, 'nested/deeper/random.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(root, 'nested/données é.txt'), 'ça marche\n');
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'run.sh'), 0o755);
  await symlink('hello.txt', join(root, 'link to hello'));
  await symlink('../does-not-exist', join(root, 'nested/dangling'));
  const past = new Date('2020-02-02T02:02:02Z');
  await utimes(join(root, 'hello.txt'), past, past);
}
/** Regular files of makeTree and their total size. */
const TREE_FILES = 5;
const TREE_BYTES = 12 + 3 * 1024 * 1024 + 11 + 18;

interface Recorded {
  method: string;
  url: string;
  contentType: string | undefined;
  auth: string | undefined;
  json?: unknown;
}

/**
 * A stand-in server that records what the CLI sends and keeps pushed chunks and manifests as
 * they came, serving them back: it pins the requests of a delta push and pull without the real
 * server (which the end-to-end suite below and test/transfer/ drive).
 */
async function stubServer() {
  const requests: Recorded[] = [];
  const chunks = new Map<string, Buffer>();
  const commits = new Map<string, unknown>();
  const tags = new Map<string, string>();
  const repos = new Set<string>();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const body = Buffer.concat(parts);
    const url = new URL(req.url ?? '/', 'http://stub');
    const rec: Recorded = {
      method: req.method ?? '',
      url: url.pathname + url.search,
      contentType: req.headers['content-type'],
      auth: req.headers.authorization,
    };
    if (rec.contentType === 'application/json') rec.json = JSON.parse(body.toString());
    requests.push(rec);
    const send = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    };
    if (!rec.auth) return send(401, { error: 'missing bearer token', success: false });
    const path = url.pathname;
    let m: RegExpExecArray | null;
    if (path === '/api/v1/user') return send(200, { login: 'alice' });
    if ((m = /^\/api\/v1\/(?:user|orgs\/([^/]+))\/repos$/.exec(path)) && req.method === 'POST') {
      repos.add(`${m[1] ?? 'alice'}/${(rec.json as { name: string }).name}`);
      return send(201, {});
    }
    if ((m = /^\/api\/v1\/repos\/([^/]+\/[^/]+)$/.exec(path))) {
      if (repos.has(decodeURIComponent(m[1] as string))) return send(200, {});
      return send(404, { error: 'repository not found', success: false });
    }
    if ((m = /^\/api\/v1\/repos\/(.+)\/tags\/([^/]+)$/.exec(path))) {
      const commit = tags.get(`${m[1]}:${m[2]}`);
      return commit ? send(200, { commit_id: commit }) : send(404, { error: 'tag not found', success: false });
    }
    if (/\/chunks\/missing$/.test(path)) {
      return send(200, { missing: (rec.json as { digests: string[] }).digests.filter((d) => !chunks.has(d)) });
    }
    if (/\/chunks$/.test(path)) {
      for (let at = 0; at < body.length; ) {
        const length = body.readUInt32BE(at);
        chunks.set(body.toString('hex', at + 4, at + 36), body.subarray(at + 36, at + 36 + length));
        at += 36 + length;
      }
      return send(200, { stored: 0, created: 0, bytes: 0 });
    }
    if (/\/chunks\/fetch$/.test(path)) {
      // The pack framing, written out here rather than with the CLI's own code it pins.
      const records = (rec.json as { digests: string[] }).digests.flatMap((d) => {
        const data = chunks.get(d) ?? Buffer.alloc(0);
        const header = Buffer.alloc(36);
        header.writeUInt32BE(data.length, 0);
        header.write(d, 4, 'hex');
        return [header, data];
      });
      return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.concat(records));
    }
    if ((m = /^\/api\/v1\/repos\/(.+)\/commits$/.exec(path))) {
      const commit = rec.json as { tag: string; manifest: { entries: { size: number }[] } };
      const id = `c${commits.size + 1}`;
      commits.set(id, commit.manifest);
      tags.set(`${m[1]}:${commit.tag}`, id);
      const bytes = commit.manifest.entries.reduce((n, e) => n + e.size, 0);
      return send(201, { commit_id: id, reference: `r:${commit.tag}`, files: 1, bytes, new_bytes: 0 });
    }
    if ((m = /\/commits\/([^/]+)\/manifest$/.exec(path))) {
      return send(200, { commit_id: m[1], ...(commits.get(m[1] as string) as object) });
    }
    if (path === '/api/v1/users/alice/repos') {
      // 103 repositories, 50 a page, no X-Total-Count: the short third page ends the listing.
      const page = Number(url.searchParams.get('page'));
      const count = Math.max(0, Math.min(50, 103 - (page - 1) * 50));
      const row = (i: number) => ({ name: `r${i}`, full_name: `alice/r${i}`, visibility: 'private', fork: false });
      return send(200, Array.from({ length: count }, (_, i) => row((page - 1) * 50 + i)));
    }
    if (path === '/api/v1/vm/new_root') return send(201, { vm_id: 'vm2' });
    if (/^\/api\/v1\/vm\/(branch\/by_ref\/[^/]+\/[^/]+|[^/]+\/branch)$/.test(path)) {
      const count = Number(url.searchParams.get('count') ?? 1);
      return send(201, { vms: Array.from({ length: count }, (_, i) => ({ vm_id: `b${i + 1}` })) });
    }
    if (/^\/api\/v1\/vm\/[^/]+\/commit$/.test(path)) return send(201, { commit_id: 'c9' });
    if ((m = /^\/api\/v1\/repositories\/([^/]+)\/tags$/.exec(path))) {
      if (m[1] === 'nothing') return send(404, { error: 'repository not found', success: false });
      const { tag_name, commit_id } = rec.json as { tag_name: string; commit_id: string };
      return send(201, { tag_id: 't1', commit_id, reference: `${decodeURIComponent(m[1] as string)}:${tag_name}` });
    }
    if (path === '/api/v1/repositories/fork') {
      return send(201, { vm_id: 'vm1', commit_id: 'c2', repo_name: 'copy', tag_name: 'main', reference: 'copy:main' });
    }
    return send(500, { error: 'unexpected request', success: false });
  };
  // A stub that throws answers 500 with the reason, for the test to show, not an unhandled rejection.
  const server = createHttpServer((req, res) => {
    handle(req, res).catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    repos,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface Node {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtime?: number;
  sha256?: string;
  target?: string;
}

/** Every entry under `root`: type, permission bits, file digest and mtime, symlink target. */
async function snapshotTree(root: string, prefix = ''): Promise<Record<string, Node>> {
  const out: Record<string, Node> = {};
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const abs = join(root, rel);
    const st = await lstat(abs);
    const mode = st.mode & 0o777;
    if (st.isSymbolicLink()) out[rel] = { type: 'symlink', mode: 0, target: await readlink(abs) };
    else if (st.isDirectory()) Object.assign(out, { [rel]: { type: 'dir', mode } }, await snapshotTree(root, rel));
    else {
      const sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
      out[rel] = { type: 'file', mode, sha256, mtime: Math.floor(st.mtimeMs / 1000) };
    }
  }
  return out;
}

describe('against a stub server', () => {
  let work: string;
  let stub: Awaited<ReturnType<typeof stubServer>>;
  let env: Env;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'snapfork-cli-stub-'));
    stub = await stubServer();
    env = { SNAPFORK_URL: stub.url, SNAPFORK_TOKEN: 'tok' };
  });

  afterAll(async () => {
    await stub?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('creates a missing repository, sends only missing chunks, commits the manifest, and pulls it back identical', async () => {
    const src = join(work, 'src');
    await makeTree(src);
    const pushed = await cli(['push', src, 'alice/data:v1', '--message', 'first try', '--json'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({ commit_id: 'c1', bytes_hashed: TREE_BYTES, bytes_sent: TREE_BYTES, bytes_reused: 0 });
    expect(stub.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'GET /api/v1/repos/alice/data',
      'GET /api/v1/user',
      'POST /api/v1/user/repos',
      'GET /api/v1/repos/alice/data/tags/v1',
      'POST /api/v1/repos/alice/data/chunks/missing',
      'POST /api/v1/repos/alice/data/chunks',
      'POST /api/v1/repos/alice/data/commits',
    ]);
    expect(stub.requests[2]?.json).toEqual({ name: 'data', visibility: 'private' });
    expect(stub.requests[5]).toMatchObject({ contentType: 'application/octet-stream', auth: 'Bearer tok' });
    const committed = stub.requests[6]?.json as { tag: string; parent: unknown; message: string; manifest: { entries: { path: string; type: string }[] } };
    expect(committed).toMatchObject({ tag: 'v1', parent: null, message: 'first try' });
    expect(committed.manifest.entries.map((e) => `${e.type} ${e.path}`)).toEqual([
      'dir empty dir',
      'file empty.bin',
      'file hello.txt',
      'symlink link to hello',
      'dir nested',
      'symlink nested/dangling',
      'dir nested/deeper',
      'file nested/deeper/random.bin',
      'file nested/données é.txt',
      'file run.sh',
    ]);

    stub.requests.length = 0;
    const again = await cli(['push', src, 'alice/data:v1', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ bytes_sent: 0, bytes_reused: TREE_BYTES });
    expect(stub.requests.some((r) => r.url.endsWith('/chunks'))).toBe(false);
    expect(stub.requests.at(-1)?.json).toMatchObject({ parent: 'c1' });

    const out = join(work, 'out');
    const pulled = await cli(['pull', 'alice/data:v1', out, '--json'], env);
    expect(pulled.code, pulled.stderr).toBe(0);
    const summary = { reference: 'alice/data:v1', commit_id: 'c2', dir: out, files: TREE_FILES, bytes: TREE_BYTES };
    expect(JSON.parse(pulled.stdout)).toEqual({ ...summary, bytes_hashed: 0, bytes_fetched: TREE_BYTES, bytes_reused: 0 });
    expect(await snapshotTree(out)).toEqual(await snapshotTree(src));
  });

  it('creates an org repository for another owner, once', async () => {
    stub.requests.length = 0;
    const file = join(work, 'disk.img');
    await writeFile(file, 'disk');
    for (const tag of ['a', 'b']) {
      const r = await cli(['push', file, `acme/vm:${tag}`, '--visibility', 'public'], env);
      expect(r.code, r.stderr).toBe(0);
    }
    expect(stub.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/repos'))).toMatchObject([
      { url: '/api/v1/orgs/acme/repos', json: { name: 'vm', visibility: 'public' } },
    ]);
  });

  it('follows repository pages until a short one', async () => {
    stub.requests.length = 0;
    const r = await cli(['repos', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveLength(103);
    expect(stub.requests.map((q) => q.url)).toEqual([
      '/api/v1/user',
      '/api/v1/users/alice/repos?page=1&per_page=50',
      '/api/v1/users/alice/repos?page=2&per_page=50',
      '/api/v1/users/alice/repos?page=3&per_page=50',
    ]);
  });

  it('sends a fork request and prints its summary', async () => {
    stub.requests.length = 0;
    const r = await cli(['fork', 'alice/data:v1', '--name', 'copy'], env);
    expect(r).toEqual({ code: 0, stdout: 'forked alice/data:v1 -> copy:main (commit c2, vm vm1)\n', stderr: '' });
    expect(stub.requests[0]?.json).toEqual({
      source_org: 'alice',
      source_repo: 'data',
      source_tag: 'v1',
      repo_name: 'copy',
    });
  });

  it('sends vm new, branch and commit (and its tag) as the Vers VM API reads them', async () => {
    stub.requests.length = 0;
    const newFlags = ['--vcpus', '2', '--mem', '512', '--disk', '1024', '--label', 'a=1', '--label=b=x=y', '--no-wait'];
    expect(await cli(['vm', 'new', ...newFlags], env)).toEqual({ code: 0, stdout: 'vm2\n', stderr: '' });
    expect(await cli(['vm', 'new', '--json'], env)).toEqual({ code: 0, stdout: '{"vm_id":"vm2"}\n', stderr: '' });
    expect(await cli(['vm', 'branch', 'vm2', '--count', '2', '--keep-paused'], env)).toEqual({ code: 0, stdout: 'b1\nb2\n', stderr: '' });
    expect(await cli(['vm', 'branch', 'dätä:v1', '--json'], env)).toEqual({ code: 0, stdout: '{"vms":[{"vm_id":"b1"}]}\n', stderr: '' });
    // owner/repo:tag goes by the tag's commit, as vm from does.
    expect(await cli(['vm', 'branch', 'alice/data:v1'], env)).toEqual({ code: 0, stdout: 'b1\n', stderr: '' });
    expect(await cli(['vm', 'commit', 'vm2'], env)).toEqual({ code: 0, stdout: 'c9\n', stderr: '' });
    const tagged = await cli(['vm', 'commit', 'vm2', '--name', 'n', '--description', 'd', '--keep-paused', '--tag', 'snap:v1', '--json'], env);
    expect(tagged).toEqual({ code: 0, stdout: '{"commit_id":"c9","tag":"snap:v1"}\n', stderr: '' });
    const untagged = await cli(['vm', 'commit', 'vm2', '--tag', 'nothing:v1'], env);
    expect(untagged).toEqual({ code: 1, stdout: '', stderr: 'snapfork: committed c9, but tagging it nothing:v1 failed: 404 repository not found\n' });

    expect(stub.requests.map((r) => [`${r.method} ${r.url}`, r.json])).toEqual([
      ['POST /api/v1/vm/new_root?wait_boot=false', { vm_config: { vcpu_count: 2, mem_size_mib: 512, fs_size_mib: 1024, labels: { a: '1', b: 'x=y' } } }],
      ['POST /api/v1/vm/new_root?wait_boot=true', { vm_config: {} }],
      ['POST /api/v1/vm/vm2/branch?count=2&keep_paused=true', undefined],
      ['POST /api/v1/vm/branch/by_ref/d%C3%A4t%C3%A4/v1', undefined],
      ['GET /api/v1/repos/alice/data/tags/v1', undefined],
      [expect.stringMatching(/^POST \/api\/v1\/vm\/c\d+\/branch$/), undefined],
      ['POST /api/v1/vm/vm2/commit', {}],
      ['POST /api/v1/vm/vm2/commit?keep_paused=true', { name: 'n', description: 'd' }],
      ['POST /api/v1/repositories/snap/tags', { tag_name: 'v1', commit_id: 'c9' }],
      ['POST /api/v1/vm/vm2/commit', {}],
      ['POST /api/v1/repositories/nothing/tags', { tag_name: 'v1', commit_id: 'c9' }],
    ]);
  });

  it("prints the server's error and status on one line", async () => {
    const r = await cli(['pull', 'alice/data:nope', join(work, 'never')], env);
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'snapfork: 404 tag not found\n' });
    const anonymous = await cli(['tags', 'alice/data'], { SNAPFORK_URL: stub.url });
    expect(anonymous).toEqual({
      code: 1,
      stdout: '',
      stderr: 'snapfork: 401 missing bearer token (set SNAPFORK_TOKEN or pass --token)\n',
    });
  });
});

/**
 * The server lands in parallel with the CLI: until all its modules exist, the end-to-end suite
 * is skipped (and shown as skipped). Any other failure to load it fails the suite.
 */
describe('end to end against a real server', () => {
  let work: string;
  let server: { url: string; close(): Promise<void> };
  let env: Env;
  let acmeEnv: Env;
  const src = () => join(work, 'src');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'snapfork-cli-'));
    const dataDir = join(work, 'data');
    server = await startServer(loadConfig({ SNAPFORK_LOG_LEVEL: 'silent' }, { host: '127.0.0.1', port: 0, dataDir }));
    const mint = async (...flags: string[]) => {
      const minted = await cli(['token', 'create', '--user', 'alice', ...flags, '--data-dir', dataDir]);
      expect(minted.code, minted.stderr).toBe(0);
      expect(minted.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
      return { SNAPFORK_URL: server.url, SNAPFORK_TOKEN: minted.stdout.trim() };
    };
    env = await mint('--ttl', '1h');
    // A token acting for the organization acme, which alice then owns.
    acmeEnv = await mint('--org', 'acme', '--scope', 'repo:read', '--scope', 'repo:write');

    await makeTree(src());
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('pushes a directory, pulls it back identical, forks it, and lists both', async () => {
    const pushed = await cli(['push', src(), 'alice/data:v1', '--message', 'first', '--json'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stderr).toBe('');
    const result = JSON.parse(pushed.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ repo_name: 'data', tag_name: 'v1', files: TREE_FILES });
    expect(result.bytes).toBe(TREE_BYTES);

    const expected = await snapshotTree(src());
    const out = join(work, 'pulled/v1');
    const pulled = await cli(['pull', 'alice/data:v1', out, '--json'], env);
    expect(pulled.code, pulled.stderr).toBe(0);
    const summary = { reference: 'alice/data:v1', dir: out, files: TREE_FILES, bytes: TREE_BYTES };
    expect(JSON.parse(pulled.stdout)).toMatchObject({ ...summary, bytes_hashed: 0, bytes_fetched: TREE_BYTES, bytes_reused: 0 });
    expect(await snapshotTree(out)).toEqual(expected);

    const forked = await cli(['fork', 'alice/data:v1', '--name', 'data-fork', '--json'], env);
    expect(forked.code, forked.stderr).toBe(0);
    const fork = JSON.parse(forked.stdout) as { repo_name: string; tag_name: string; commit_id: string };
    expect(fork.repo_name).toBe('data-fork');
    const forkOut = join(work, 'pulled/fork');
    const pulledFork = await cli(['pull', `alice/data-fork:${fork.tag_name}`, forkOut], env);
    expect(pulledFork.code, pulledFork.stderr).toBe(0);
    expect(pulledFork.stdout).toBe(`pulled alice/data-fork:${fork.tag_name} into ${forkOut}: 5 files, 3.0 MiB (3.0 MiB fetched)\n`);
    expect(await snapshotTree(forkOut)).toEqual(expected);

    const tags = await cli(['tags', 'alice/data', '--json'], env);
    expect(tags.code, tags.stderr).toBe(0);
    expect((JSON.parse(tags.stdout) as { name: string }[]).map((t) => t.name)).toEqual(['v1']);
    const table = await cli(['tags', 'alice/data'], env);
    expect(table.stdout).toMatch(/^TAG +COMMIT +UPDATED\nv1 +\S+ +\S+\n$/);

    const repos = await cli(['repos', '--json'], env);
    expect(repos.code, repos.stderr).toBe(0);
    const names = (JSON.parse(repos.stdout) as { name: string }[]).map((r) => r.name).sort();
    expect(names).toEqual(['data', 'data-fork']);
  }, 60_000);

  it('wraps a single file, creates an org repository, and shows progress on a TTY', async () => {
    const disk = join(work, 'disk.img');
    await writeFile(disk, randomBytes(256 * 1024));
    const pushed = await cli(['push', disk, 'acme/vm:base', '--visibility', 'internal'], acmeEnv, true);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/^pushed acme\/vm:base \(commit \S+\): 1 files, 256\.0 KiB, 256\.0 KiB sent\n$/);
    expect(pushed.stderr).toContain('created internal repository acme/vm');
    expect(pushed.stderr).toMatch(/\rhash acme\/vm:base .*\(100%\)/);
    expect(pushed.stderr).toMatch(/\rsend acme\/vm:base .*\(100%\)/);

    const out = join(work, 'pulled/vm');
    const pulled = await cli(['pull', 'acme/vm:base', out], acmeEnv);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await readdir(out)).toEqual(['disk.img']);
    expect((await readFile(join(out, 'disk.img'))).equals(await readFile(disk))).toBe(true);

    const repos = await cli(['repos', 'acme', '--json'], acmeEnv);
    expect((JSON.parse(repos.stdout) as { full_name: string }[]).map((r) => r.full_name)).toEqual(['acme/vm']);
  }, 60_000);

  it('pushes the contents of a .tar archive, read in place, long names and links included', async () => {
    const dir = join(work, 'tar-src');
    const deep = join(dir, 'a'.repeat(60), 'b'.repeat(60));
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'a-name-past-the-100-bytes-of-ustar.txt'), 'deep\n');
    await writeFile(join(dir, 'top.bin'), randomBytes(300_000));
    await symlink('top.bin', join(dir, 'link'));
    const archive = join(work, 'set.tar');
    await writeFile(archive, await tarOf(dir));

    const pushed = await cli(['push', archive, 'alice/from-tar:v1', '--json'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({ files: 2, bytes: 300_005 });
    const out = join(work, 'pulled/from-tar');
    const pulled = await cli(['pull', 'alice/from-tar:v1', out], env);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshotTree(out)).toEqual(await snapshotTree(dir));
  }, 60_000);

  it("takes OAuth's space-separated --scope as it takes repeated ones", async () => {
    const minted = await cli(['token', 'create', '--user', 'alice', '--scope', 'repo:read  repo:write', '--data-dir', join(work, 'data')]);
    expect(minted.code, minted.stderr).toBe(0);
    const token = minted.stdout.trim();
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { scope: string };
    expect(payload.scope).toBe('repo:read repo:write');
    // The write scope is really there: the token pushes.
    const file = join(work, 'spaced.txt');
    await writeFile(file, 'spaced scopes\n');
    const pushed = await cli(['push', file, 'alice/spaced:v1'], { SNAPFORK_URL: server.url, SNAPFORK_TOKEN: token });
    expect(pushed.code, pushed.stderr).toBe(0);
  });

  it('quota: an administrator sets limits, a member reads them, and a push past the bytes quota exits 1 with the 507', async () => {
    const mint = async (...flags: string[]) => {
      const minted = await cli(['token', 'create', ...flags, '--data-dir', join(work, 'data')]);
      expect(minted.code, minted.stderr).toBe(0);
      return { SNAPFORK_URL: server.url, SNAPFORK_TOKEN: minted.stdout.trim() };
    };
    const admin = await mint('--user', 'root', '--scope', 'admin');
    const quinn = await mint('--user', 'quinn');
    const set = await cli(['quota', 'quinn', '--bytes', '64KiB', '--repositories', '5', '--json'], admin);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ namespace: 'quinn', limits: { bytes: 65536, repositories: 5, running_vms: null } });
    expect(await cli(['quota', 'quinn'], quinn)).toEqual({
      code: 0,
      stdout: 'quota of quinn:\n  bytes stored  0 B of 64.0 KiB\n  repositories  0 of 5\n  running VMs   0 of no limit\n\n',
      stderr: '',
    });

    const file = join(work, 'too-big.bin');
    await writeFile(file, randomBytes(100 * 1024));
    const pushed = await cli(['push', file, 'quinn/big:v1'], quinn);
    expect(pushed.code).toBe(1);
    expect(pushed.stderr).toMatch(/^snapfork: 507 namespace quinn is over its storage quota: \d+ of 65536 bytes stored/m);

    expect((await cli(['quota', 'quinn', '--bytes', '1MiB'], quinn)).stderr).toMatch(/^snapfork: 403 /);
    const bad = await cli(['quota', 'quinn', '--bytes', 'lots'], admin);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad --bytes "lots"/);
  });

  it('push: sends again what a garbage collection deleted between its missing query and its commit, and commits', async () => {
    const adminMinted = await cli(['token', 'create', '--user', 'root', '--scope', 'admin', '--data-dir', join(work, 'data')]);
    const admin = adminMinted.stdout.trim();
    const tree = join(work, 'collected');
    await mkdir(tree);
    await writeFile(join(tree, 'a.bin'), randomBytes(300 * 1024));
    await writeFile(join(tree, 'b.txt'), 'small\n');
    // Pushed once and deleted: its chunks are garbage, yet still present for alice (her uploads'
    // grace), so a second push sends none of them.
    expect((await cli(['push', tree, 'alice/collected-old:v1'], env)).code).toBe(0);
    const gone = await fetch(`${server.url}/api/v1/repos/alice/collected-old`, { method: 'DELETE', headers: { authorization: `Bearer ${env.SNAPFORK_TOKEN}` } });
    expect(gone.status).toBe(204);

    // A proxy that runs a collection (grace 0: everything unreferenced goes) just before it
    // forwards the first commit: the interleaving the CLI must survive.
    const commits: number[] = [];
    const proxy = createHttpServer((req, res) => {
      void (async () => {
        const parts: Buffer[] = [];
        for await (const part of req) parts.push(part as Buffer);
        const body = Buffer.concat(parts);
        if (req.method === 'POST' && req.url?.endsWith('/commits')) {
          if (commits.length === 0) {
            const gc = await fetch(`${server.url}/api/v1/admin/gc`, {
              method: 'POST',
              headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
              body: JSON.stringify({ purge_deleted: true, grace_seconds: 0 }),
            });
            expect(((await gc.json()) as { chunks: number }).chunks).toBeGreaterThan(0);
          }
        }
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'connection' && k !== 'content-length')) as Record<string, string>;
        const answer = await fetch(`${server.url}${req.url}`, { method: req.method, headers, body: body.length > 0 ? body : undefined });
        if (req.method === 'POST' && req.url?.endsWith('/commits')) commits.push(answer.status);
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/octet-stream' });
        res.end(Buffer.from(await answer.arrayBuffer()));
      })().catch((e: unknown) => res.destroy(e as Error));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const viaProxy = { ...env, SNAPFORK_URL: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` };
      const pushed = await cli(['push', tree, 'alice/collected-new:v1', '--json'], viaProxy);
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(commits).toEqual([422, 201]);
      expect(JSON.parse(pushed.stdout)).toMatchObject({ bytes_sent: 300 * 1024 + 6 });
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
    const out = join(work, 'collected-pulled');
    expect((await cli(['pull', 'alice/collected-new:v1', out], env)).code).toBe(0);
    expect(await snapshotTree(out)).toEqual(await snapshotTree(tree));
  });

  it('prints a server error as one line and exits 1', async () => {
    const r = await cli(['pull', 'alice/missing:v1', join(work, 'never')], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^snapfork: 404 \S.*\n$/);
  });

  it("vm: lists none, and prints the server's error for a source or VM that is not there (exit 1)", async () => {
    // acme has forked nothing, so it has no VM (alice's fork above has one, asleep).
    expect(await cli(['vm', 'ls', '--json'], acmeEnv)).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
    expect(await cli(['vm', 'ls'], acmeEnv)).toEqual({ code: 0, stdout: 'VM  STATE  CREATED  LABELS\n', stderr: '' });
    const missing = randomUUID();
    // A tree naming its root disk by convention, whose rootfs.img is no ext4 image.
    const badDisk = join(work, 'bad-disk');
    await mkdir(badDisk);
    await writeFile(join(badDisk, 'rootfs.img'), 'not a file system\n');
    expect((await cli(['push', badDisk, 'alice/bad-disk:v1'], env)).code).toBe(0);
    const cases: [string[], string][] = [
      [['vm', 'from', 'nothing:v1'], '404 repository not found'],
      [['vm', 'from', 'data:v9'], '404 tag v9 not found'],
      [['vm', 'from', missing], '404 commit not found'],
      [['vm', 'from', 'data:v1:x'], "400 Invalid ref format. Expected 'repo_name:tag_name'"],
      // owner/repo:tag goes by the tag's commit: both steps' errors are the server's.
      [['vm', 'from', 'alice/data:v9'], '404 tag v9 not found'],
      [['vm', 'from', 'alice/bad-disk:v1'], '422 commit holds no bootable disk: rootfs.img is not an ext4 image'],
      [['vm', 'exec', missing, '--', 'true'], `404 vm ${missing} not found`],
      // by_ref answers its errors as {vms: [], error}, without `success`: still the server's words.
      [['vm', 'branch', 'nothing:v1'], '404 repository not found'],
      [['vm', 'branch', 'data:v1', '--count', '17'], '400 count must be from 1 to 16'],
      [['vm', 'branch', missing], '404 commit not found'],
      [['vm', 'commit', missing, '--tag', 'data:v2'], `404 vm ${missing} not found`],
      [['vm', 'pause', missing], `404 vm ${missing} not found`],
      [['vm', 'rm', missing, '--json'], `404 vm ${missing} not found`],
    ];
    for (const [argv, message] of cases) {
      expect(await cli(argv, env), argv.join(' ')).toEqual({ code: 1, stdout: '', stderr: `snapfork: ${message}\n` });
    }
  });
});

describe('snapfork vm against a server that boots VMs', () => {
  let s: TestServer;
  let env: Env;

  beforeAll(async () => {
    const assets = await buildVmAssets();
    s = await startTestServer({ SNAPFORK_VM_ASSETS: assets });
    const token = await s.token('alice');
    env = { SNAPFORK_URL: s.url, SNAPFORK_TOKEN: token };
    // The guest's root disk as alice/os:v1, copied sparse as the VM tests do.
    const dir = await tempDir();
    await execFileAsync('cp', ['--sparse=always', join(assets, 'rootfs.img'), join(dir, 'rootfs.img')]);
    const pushed = await cli(['push', dir, 'alice/os:v1'], env);
    await rm(dir, { recursive: true, force: true });
    expect(pushed.code, pushed.stderr).toBe(0);
  }, 120_000);
  afterAll(() => s?.stop());

  it('boots from owner/repo:tag, execs with exit codes, stdin, env and workdir, pauses, resumes and removes', async () => {
    // The owner's form, through the tag's commit id (repo:tag goes to the server as a ref).
    const booted = await cli(['vm', 'from', 'alice/os:v1'], env);
    expect(booted.code, booted.stderr).toBe(0);
    expect(booted.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    const vmId = booted.stdout.trim();
    const listed = await cli(['vm', 'ls', '--json'], env);
    expect(JSON.parse(listed.stdout)).toEqual([{ vm_id: vmId, owner_id: expect.any(String), state: 'running', created_at: expect.any(String), labels: {} }]);

    expect(await cli(['vm', 'exec', vmId, '--', 'echo', 'hi'], env)).toEqual({ code: 0, stdout: 'hi\n', stderr: '' });
    expect(await cli(['vm', 'exec', vmId, '--', 'sh', '-c', 'echo oops >&2; exit 3'], env)).toEqual({ code: 3, stdout: '', stderr: 'oops\n' });
    const shell = ['sh', '-c', 'cat; echo "$A $B"; pwd'];
    const piped = await cli(['vm', 'exec', vmId, '--env', 'A=1', '--env=B=x=y', '--workdir', '/tmp', '--timeout', '30', '--', ...shell], env, false, Readable.from(['from ', 'stdin\n']));
    expect(piped).toEqual({ code: 0, stdout: 'from stdin\n1 x=y\n/tmp\n', stderr: '' });
    const json = await cli(['vm', 'exec', vmId, '--json', '--', 'sh', '-c', 'echo out; exit 4'], env);
    expect(json.code).toBe(4);
    expect(JSON.parse(json.stdout)).toEqual({ exit_code: 4, stdout: 'out\n', stderr: '', exec_id: expect.any(String) });

    expect(await cli(['vm', 'pause', vmId], env)).toEqual({ code: 0, stdout: `${vmId} paused\n`, stderr: '' });
    const refused = await cli(['vm', 'exec', vmId, '--', 'true'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^snapfork: 409 .*paused/);
    const resumed = await cli(['vm', 'resume', vmId, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ vm_id: vmId, state: 'running' });

    expect(await cli(['vm', 'rm', vmId, '--json'], env)).toEqual({ code: 0, stdout: `${JSON.stringify({ vm_id: vmId })}\n`, stderr: '' });
    expect(await cli(['vm', 'ls', '--json'], env)).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
  }, 60_000);

  it('boots a new root VM, branches it two ways, commits and tags it, and boots the tag with its file back', async () => {
    /** The command's stdout, after checking that it ran well. */
    const ok = async (...argv: string[]) => {
      const r = await cli(argv, env);
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const root = (JSON.parse(await ok('vm', 'new', '--mem', '320', '--disk', '640', '--label', 'role=base', '--json')) as { vm_id: string }).vm_id;
    const listed = JSON.parse(await ok('vm', 'ls', '--json')) as { vm_id: string }[];
    expect(listed).toEqual([expect.objectContaining({ vm_id: root, state: 'running', labels: { role: 'base' } })]);
    // The sizes reached the VM: more memory than the default 256 MiB, a root file system grown past the 512 MiB image.
    const memKib = Number(/MemTotal:\s+(\d+)/.exec(await ok('vm', 'exec', root, '--', 'cat', '/proc/meminfo'))?.[1]);
    expect(memKib).toBeGreaterThan(256 * 1024);
    const rootKib = Number((await ok('vm', 'exec', root, '--', 'df', '-k', '/')).trim().split('\n')[1]?.split(/\s+/)[1]);
    expect(rootKib).toBeGreaterThan(560 * 1024);
    await ok('vm', 'exec', root, '--', 'sh', '-c', 'echo forty-two > /root/mark');

    const branches = (await ok('vm', 'branch', root, '--count', '2')).trim().split('\n');
    expect(branches).toHaveLength(2);
    expect(new Set([root, ...branches]).size).toBe(3);
    for (const branch of branches) {
      // Each branch is a VM of its own (its hostname is its id's start) that has the file.
      expect(await ok('vm', 'exec', branch, '--', 'sh', '-c', 'hostname; cat /root/mark')).toBe(`${branch.slice(0, 8)}\nforty-two\n`);
      await ok('vm', 'rm', branch);
    }

    const committed = JSON.parse(await ok('vm', 'commit', root, '--name', 'marked', '--tag', 'os:marked', '--json')) as { commit_id: string; tag: string };
    expect(committed).toEqual({ commit_id: expect.stringMatching(/^[0-9a-f-]{36}$/), tag: 'os:marked' });
    // The VM runs on after its commit.
    expect(await ok('vm', 'exec', root, '--', 'cat', '/root/mark')).toBe('forty-two\n');
    await ok('vm', 'rm', root);

    const restored = (await ok('vm', 'from', 'os:marked')).trim();
    expect(await ok('vm', 'exec', restored, '--', 'cat', '/root/mark')).toBe('forty-two\n');
    await ok('vm', 'rm', restored);
    expect(await ok('vm', 'ls', '--json')).toBe('[]\n');
  }, 120_000);
});
