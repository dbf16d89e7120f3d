
/**
 * Malformed requests across every operation of openapi/snapfork.yaml (issue 14, "Bad input").
 *
 * Each request starts from a valid one, built from the operation's parameters and body schema
 * and from fixtures set up beforehand (an organization with a public and a private repository,
 * tags, commits, chunk digests), and changes ONE thing: a path parameter, a query parameter, a
 * header, one field of the JSON body, the whole body, or its content type. So the request gets
 * past routing and validation of everything else and reaches the code of that one thing.
 *
 * Requests go out on raw HTTP (node:http), so that paths may carry what fetch would clean up:
 * bad percent-encoding, raw bytes, `..`. The plan is deterministic for a seed and interleaves the
 * operations, so a short run still reaches every one of them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { load } from 'js-yaml';
import { OPENAPI_DOCUMENT } from '../../src/http/contract.js';
import { startTestServer } from '../../test/support/server.js';
import { tarOfEntries } from '../../test/support/trees.js';
import { seededRandom } from '../../test/support/seeded-random.js';
import { buildVmAssets } from '../../test/support/vm-assets.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface Schema {
  type?: string | string[];
  enum?: Json[];
  const?: Json;
  format?: string;
  pattern?: string;
  minimum?: number;
  maxLength?: number;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema?: Schema;
}

export interface Operation {
  id: string;
  method: string;
  /** The path template, `{name}` for a parameter (`{path}*` spans slashes). */
  path: string;
  parameters: Parameter[];
  /** Absent for an operation without a body. */
  body?: { contentTypes: string[]; schema?: Schema };
  /** True when the operation only reads, whatever its method (GET, or a POST marked x-safe). */
  safe: boolean;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

/** Follows `#/components/...` references (js-yaml has resolved the document's anchors already). */
function resolver(document: Record<string, unknown>) {
  const resolve = <T>(node: T): T => {
    if (Array.isArray(node)) return node.map(resolve) as T;
    if (node === null || typeof node !== 'object') return node;
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref === 'string') {
      const target = ref
        .slice(2)
        .split('/')
        .reduce<unknown>((at, key) => (at as Record<string, unknown>)[key], document);
      return resolve(target as T);
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v)])) as T;
  };
  return resolve;
}

/** Every operation of the contract, with its parameters and request body resolved. */
export function loadOperations(): Operation[] {
  const document = load(readFileSync(OPENAPI_DOCUMENT, 'utf8')) as Record<string, unknown> & { paths: Record<string, Record<string, unknown>> };
  const resolve = resolver(document);
  return Object.entries(document.paths).flatMap(([path, rawItem]) => {
    const item = resolve(rawItem) as Record<string, unknown> & { parameters?: Parameter[] };
    return METHODS.filter((m) => m in item).map((method): Operation => {
      const op = item[method] as { operationId: string; parameters?: Parameter[]; requestBody?: { content: Record<string, { schema?: Schema }> }; 'x-safe'?: boolean };
      const parameters = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const content = op.requestBody?.content;
      return {
        id: op.operationId,
        method: method.toUpperCase(),
        path,
        parameters,
        body: content && { contentTypes: Object.keys(content), schema: Object.values(content)[0]?.schema },
        safe: method === 'get' || op['x-safe'] === true,
      };
    });
  });
}

// ---- hostile values -------------------------------------------------------------------------

const deep = (depth: number): Json => (depth === 0 ? 'bottom' : { a: deep(depth - 1) });

/** Strings that name nothing sensible, for any string slot. */
const HOSTILE_STRINGS: string[] = [
  '',
  ' ',
  '..',
  '../../etc/passwd',
  '/',
  '/etc/passwd',
  'a/b',
  '.',
  '\u0000',
  'a\u0000b',
  'x'.repeat(300),
  'x'.repeat(70_000),
  '😀',
  'é',
  '\u202e\u0301',
  '\ud800',
  '-1',
  '0',
  '99999999999999999999',
  '1e309',
  'NaN',
  'null',
  'true',
  "a'b\"c",
  '<script>',
  '%',
  '%zz',
  '%00',
  'C:\\Windows',
  'a\\..\\b',
  '00000000-0000-0000-0000-000000000000',
  'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF',
  'f'.repeat(64),
  'v1\n',
  '__proto__',
  'constructor',
];

/** JSON values of every type, for a body field. */
const HOSTILE_VALUES: Json[] = [
  ...HOSTILE_STRINGS,
  0,
  -1,
  1.5,
  2 ** 53,
  -(2 ** 63),
  1e308,
  true,
  false,
  null,
  [],
  ['a'],
  [[[[]]]],
  {},
  { $gt: '' },
  JSON.parse('{"__proto__":{"polluted":true}}') as Json,
  deep(64),
  Array.from({ length: 20_000 }, (_, i) => i),
];

/** Query values, as they appear in a URL (already encoded, or deliberately not). */
const HOSTILE_QUERY = [
  '',
  '-1',
  '0',
  '1.5',
  '1e3',
  '0x10',
  '2147483648',
  '99999999999999999999999',
  'abc',
  'true',
  '%00',
  '%zz',
  '%',
  '%C0%AE%C0%AE',
  '..%2F..%2Fetc',
  encodeURIComponent('😀'),
  'x'.repeat(5000),
  '%FF%FE',
  '[]',
  'a&b=c',
];

/** Path segments, as they appear in the URL: encoded hostile strings, and raw ones fetch would clean up. */
const HOSTILE_SEGMENTS = [
  ...HOSTILE_STRINGS.filter((s) => s !== '' && s.length < 1000).map((s) => (s === '\ud800' ? '%ED%A0%80' : encodeURIComponent(s))),
  '..',
  '.',
  '%',
  '%zz',
  '%2e%2e',
  '%2e%2e%2f%2e%2e',
  '%C0%AE%C0%AE',
  '%FF',
  '\xff\xfe',
  'a;b',
  'a?b=c',
  'x'.repeat(9000),
];

/** Whole bodies, with the operation's own content type. */
const HOSTILE_BODIES: (string | Buffer)[] = [
  '',
  '{',
  'null',
  '[]',
  '"a string"',
  '1',
  '{"a":1,"a":2}',
  '\ufeff{}',
  '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}',
  '['.repeat(100_000),
  JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }),
  Buffer.from([0xff, 0xfe, 0x00, 0x01]),
  Buffer.alloc(4096),
  'not a tar at all',
];

const HOSTILE_CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/json; charset=klingon',
  'application/x-tar',
  'application/octet-stream',
  'garbage',
  '*/*',
];

const HOSTILE_ENCODINGS = ['zstd', 'gzip', 'br', 'deflate', 'identity, gzip', 'x'.repeat(300)];

// ---- fixtures -------------------------------------------------------------------------------

/** What the valid requests name; set up by setUpFixtures. */
export interface Fixtures {
  org: string;
  user: string;
  /** Another user, with no part in the organization. */
  other: string;
  tokens: { owner: string; readOnly: string; outsider: string };
  publicRepo: { name: string; id: number; commitId: string; digest: string; content: string };
  privateRepo: { name: string; id: number; commitId: string };
  /** The manifest entries of publicRepo's commit, for a manifest commit. */
  manifest: Json[];
  /** A repository the writes of the run may delete, rename or make private: replaced when they do. */
  scratch: { name: string; id: number; commitId: string };
  vmId: string;
}

/** A minimal HTTP client: JSON in and out, a token. */
export type Api = (path: string, init?: { method?: string; token?: string; json?: unknown; body?: Buffer; headers?: Record<string, string> }) => Promise<{ status: number; json(): Promise<unknown> }>;

const FILES = { 'a.txt': 'alpha\n', 'dir/b.txt': 'beta\n' };
const pushBody = () => tarOfEntries(Object.entries(FILES).map(([path, body]) => ({ path, body })));

async function expectOk<T>(res: Promise<{ status: number; json(): Promise<unknown> }>, what: string): Promise<T> {
  const answer = await res;
  if (answer.status >= 300) throw new Error(`setting up ${what}: ${answer.status} ${JSON.stringify(await answer.json())}`);
  return (await answer.json()) as T;
}

/**
 * A repository of the organization with FILES pushed as `v1`, and again as `v2` (a commit with
 * a parent); resolves with its id and v1's commit.
 */
async function repoWithTag(api: Api, token: string, org: string, name: string, visibility: string) {
  const { id } = await expectOk<{ id: number }>(api(`/api/v1/orgs/${org}/repos`, { method: 'POST', token, json: { name, visibility } }), name);
  const push = (tag: string) =>
    expectOk<{ commit_id: string }>(
      api(`/api/v1/repos/${org}/${name}/tags/${tag}/archive`, { method: 'PUT', token, body: pushBody(), headers: { 'content-type': 'application/x-tar' } }),
      `${name}:${tag}`,
    );
  const { commit_id } = await push('v1');
  await push('v2');
  return { name, id, commitId: commit_id };
}

/**
 * Sets up the fixtures on a fresh server. `token(user, org?, readOnly?)` mints a token the
 * server accepts.
 */
export async function setUpFixtures(api: Api, token: (user: string, org?: string, readOnly?: boolean) => Promise<string>): Promise<Fixtures> {
  const org = 'fuzzorg';
  const user = 'fuzzer';
  const other = 'stranger';
  const owner = await token(user, org);
  const outsider = await token(other);
  await expectOk(api('/api/v1/user', { token: outsider }), 'the outsider');
  const publicRepo = await repoWithTag(api, owner, org, 'open', 'public');
  const privateRepo = await repoWithTag(api, owner, org, 'secret', 'private');
  const manifest = await expectOk<{ entries: (Json & { path: string; chunks: { digest: string }[] })[] }>(
    api(`/api/v1/repos/${org}/open/commits/${publicRepo.commitId}/manifest`, { token: owner }),
    'the manifest',
  );
  const file = manifest.entries.find((e) => e.path === 'a.txt')!;
  return {
    org,
    user,
    other,
    tokens: { owner, readOnly: await token(user, org, true), outsider },
    publicRepo: { ...publicRepo, digest: file.chunks[0]!.digest, content: FILES['a.txt'] },
    privateRepo,
    manifest: manifest.entries,
    scratch: await repoWithTag(api, owner, org, 'scratch-0', 'public'),
    vmId: randomUUID(),
  };
}

// ---- the plan -------------------------------------------------------------------------------

/** One request of the run: how it differs from the valid one, and what goes on the wire. */
export interface Probe {
  operation: string;
  /** The one thing changed, e.g. `path repo = ..`, `body name = 0`, `header content-type`. */
  change: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

type Change =
  | { slot: 'none' }
  | { slot: 'path'; name: string; value: string }
  | { slot: 'query'; name: string; value: string }
  | { slot: 'query-twice'; name: string }
  | { slot: 'query-extra'; value: string }
  | { slot: 'header'; name: string; value: string | undefined }
  | { slot: 'field'; at: string[]; value: Json | undefined }
  | { slot: 'body'; value: string | Buffer }
  | { slot: 'content-type'; value: string };

const describeValue = (v: unknown) => {
  const s = v === undefined ? 'absent' : Buffer.isBuffer(v) ? `<${v.length} bytes>` : typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 40)}...(${s.length} chars)` : s;
};

const describeChange = (c: Change): string => {
  switch (c.slot) {
    case 'none':
      return 'none: the valid request';
    case 'path':
    case 'query':
      return `${c.slot} ${c.name} = ${describeValue(c.value)}`;
    case 'query-twice':
      return `query ${c.name} twice`;
    case 'query-extra':
      return `query extra = ${describeValue(c.value)}`;
    case 'header':
      return `header ${c.name} = ${describeValue(c.value)}`;
    case 'field':
      return `body ${c.at.join('.')} = ${describeValue(c.value)}`;
    case 'body':
      return `body = ${describeValue(c.value)}`;
    case 'content-type':
      return `content-type = ${describeValue(c.value)}`;
  }
};

/** The operations whose success changes what the fixtures name: the scratch repository is replaced after one succeeds. */
const RESHAPING = new Set([
  'updateRepo',
  'deleteRepo',
  'deleteTag',
  'vers_delete_repository',
  'vers_set_repository_visibility',
  'vers_update_repository_tag',
  'vers_delete_repository_tag',
  'vers_update_commit',
  'vers_delete_commit',
  'gitlabUnlinkFork',
  'gitlabLinkFork',
]);

export class BadInputPlan {
  private serial = 0;

  constructor(
    readonly operations: Operation[],
    private fixtures: Fixtures,
  ) {}

  /** True when a success of `operation` may have changed the scratch repository. */
  reshapes(operation: string): boolean {
    return RESHAPING.has(operation);
  }

  /** Points the writes at a new scratch repository. */
  replaceScratch(scratch: Fixtures['scratch']): void {
    this.fixtures = { ...this.fixtures, scratch };
  }

  /** A name no request used before, so that creates succeed. */
  private fresh(prefix: string): string {
    return `${prefix}${++this.serial}`;
  }

  /** The valid value of a parameter (path or query) of `op`. */
  private parameterValue(op: Operation, p: Parameter, target: 'public' | 'private'): string | undefined {
    const f = this.fixtures;
    const writes = !op.safe;
    const repo = writes ? f.scratch : target === 'public' ? f.publicRepo : f.privateRepo;
    switch (p.name) {
      case 'owner':
      case 'org':
      case 'org_name':
      case 'namespace':
        return f.org;
      case 'login':
        return op.id === 'setOrgMember' ? f.other : f.user;
      case 'repo':
      case 'repo_name':
        return repo.name;
      case 'tag':
      case 'tag_name':
        return 'v1';
      case 'commit_id':
        return repo.commitId;
      case 'digest':
        return f.publicRepo.digest;
      case 'path':
        return p.in === 'path' ? 'a.txt' : op.id === 'listTree' ? 'dir' : '/tmp/x';
      case 'vm_id':
      case 'vm_or_commit_id':
        return f.vmId;
      case 'id':
        return String(repo.id);
      case 'forked_from_id':
        return String(f.publicRepo.id);
      default: {
        const value = this.example(p.schema ?? {}, p.name);
        return p.required ? (typeof value === 'string' ? value : JSON.stringify(value)) : undefined;
      }
    }
  }

  /** The valid value of a body field called `name` that names a fixture (or a new name), if it does. */
  private named(name: string, schema: Schema): Json | undefined {
    const f = this.fixtures;
    switch (name) {
      case 'name':
      case 'new_repo_name':
      case 'repo_name':
      case 'path':
        return name === 'path' && schema.maxLength === 4096 ? '/tmp/x' : this.fresh('made-');
      case 'tag_name':
      case 'tag':
        return this.fresh('t');
      case 'source_org':
      case 'organization':
        return f.org;
      case 'namespace':
        return f.user;
      case 'source_repo':
        return f.publicRepo.name;
      case 'source_tag':
        return 'v1';
      case 'commit_id':
        return f.publicRepo.commitId;
      case 'digests':
        return [f.publicRepo.digest];
      case 'entries':
        return f.manifest;
      case 'command':
        return ['true'];
      case 'content_b64':
        return 'aGk=';
      case 'exec_id':
        return 'exec-1';
      case 'role':
        return 'member';
      case 'visibility':
        return 'public';
      case 'default_tag':
        return 'v1';
      default:
        return undefined;
    }
  }

  /** A valid value of `schema` for a field called `name`: its required fields, and the optional ones that name fixtures. */
  private example(schema: Schema, name: string): Json | undefined {
    const named = this.named(name, schema);
    if (named !== undefined) return named;
    if (schema.const !== undefined) return schema.const;
    if (schema.enum) return schema.enum[0];
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (types.includes('object') || schema.properties) {
      const out: Record<string, Json> = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        const value = (schema.required ?? []).includes(key) ? this.example(sub, key) : this.named(key, sub);
        if (value !== undefined) out[key] = value;
      }
      return out;
    }
    if (types.includes('array')) return [];
    if (types.includes('boolean')) return false;
    if (types.includes('integer') || types.includes('number')) return Math.max(schema.minimum ?? 1, 1);
    if (types.includes('string')) return schema.format === 'uuid' ? randomUUID() : schema.pattern ? 'v1' : 'x';
    if (schema.anyOf ?? schema.oneOf) return this.example((schema.anyOf ?? schema.oneOf)![0]!, name);
    return undefined;
  }

  /** The valid body of `op`, and its content type. */
  private validBody(op: Operation): { type: string; value: Json | Buffer } | undefined {
    if (!op.body) return undefined;
    const type = op.body.contentTypes[0]!;
    if (type === 'application/x-tar') return { type, value: pushBody() };
    if (type === 'application/octet-stream') {
      const chunk = Buffer.from(this.fixtures.publicRepo.content);
      if (op.id === 'uploadChunk') return { type, value: chunk };
      const record = Buffer.alloc(4);
      record.writeUInt32BE(chunk.length);
      return { type, value: Buffer.concat([record, createHash('sha256').update(chunk).digest(), chunk]) };
    }
    // Exactly one of its three ways to name a commit.
    if (op.id === 'vers_vm_from_commit') return { type, value: { commit_id: this.fixtures.publicRepo.commitId } };
    return { type, value: this.example(op.body.schema ?? {}, '') ?? {} };
  }

  /** The body fields one change may touch: every property, nested objects and first array items too. */
  private fieldPaths(value: Json, at: string[] = []): string[][] {
    if (value === null || typeof value !== 'object' || at.length >= 4) return [];
    const keys = Array.isArray(value) ? (value.length ? ['0'] : []) : Object.keys(value);
    return keys.flatMap((k) => {
      const child = (value as Record<string, Json>)[k]!;
      return [[...at, k], ...this.fieldPaths(child, [...at, k])];
    });
  }

  /** Every change this plan tries on `op`, in a fixed order. */
  changesOf(op: Operation): Change[] {
    const changes: Change[] = [];
    for (const p of op.parameters) {
      if (p.in === 'path') for (const value of HOSTILE_SEGMENTS) changes.push({ slot: 'path', name: p.name, value });
      if (p.in === 'query') {
        for (const value of HOSTILE_QUERY) changes.push({ slot: 'query', name: p.name, value });
        changes.push({ slot: 'query-twice', name: p.name });
      }
      if (p.in === 'header') for (const value of HOSTILE_ENCODINGS) changes.push({ slot: 'header', name: p.name.toLowerCase(), value });
    }
    for (const value of ['a=1', 'page=-1&per_page=1e9', 'limit=0', `${'k'.repeat(200)}=v`]) changes.push({ slot: 'query-extra', value });
    for (const value of [undefined, 'Bearer', 'Bearer x.y.z', 'Basic YTpi', `Bearer ${this.fixtures.tokens.readOnly}`, `Bearer ${this.fixtures.tokens.outsider}`, 'Bearer ' + 'a'.repeat(8000)]) {
      changes.push({ slot: 'header', name: 'authorization', value });
    }
    for (const value of ['application/zstd', 'application/vnd.gitverse.object+json;version=latest', 'nonsense/*;q=x']) changes.push({ slot: 'header', name: 'accept', value });
    for (const value of ['', 'x'.repeat(4000), '\xff\xfe', '../../etc/passwd']) changes.push({ slot: 'header', name: 'x-request-id', value });
    // The request's origin is where the absolute URLs of an answer start (the server trusts a
    // proxy on loopback, as this client is).
    for (const value of ['', 'a b', '[::1', 'x:99999', '\xe9vil', 'a/b', 'a@b', 'a?b', 'x'.repeat(300)]) changes.push({ slot: 'header', name: 'host', value });
    for (const value of ['a b', '[::1', 'a/b', 'evil.example']) changes.push({ slot: 'header', name: 'x-forwarded-host', value });
    for (const value of ['javascript', 'a b', 'ftp', 'https']) changes.push({ slot: 'header', name: 'x-forwarded-proto', value });
    if (op.body && !op.parameters.some((p) => p.in === 'header' && p.name.toLowerCase() === 'content-encoding')) {
      for (const value of HOSTILE_ENCODINGS) changes.push({ slot: 'header', name: 'content-encoding', value });
    }
    if (op.id === 'getFile') {
      for (const value of ['bytes=0-0', 'bytes=-1', 'bytes=5-2', 'bytes=99999999999999999999-', 'bytes=0-1,2-3', 'chars=0-1', 'bytes=']) changes.push({ slot: 'header', name: 'range', value });
      changes.push({ slot: 'header', name: 'if-none-match', value: '"' + 'x'.repeat(100) + '"' });
    }
    if (!op.safe) for (const value of ['', 'k'.repeat(1000), 'same-key']) changes.push({ slot: 'header', name: 'idempotency-key', value });
    const body = this.validBody(op);
    if (body) {
      for (const value of HOSTILE_BODIES) changes.push({ slot: 'body', value });
      for (const value of HOSTILE_CONTENT_TYPES) changes.push({ slot: 'content-type', value });
      if (!Buffer.isBuffer(body.value)) {
        // Past the last manifest entry: a second entry, of any shape.
        const beyond = op.id === 'commitManifest' ? [['manifest', 'entries', String(this.fixtures.manifest.length)]] : [];
        for (const at of [...this.fieldPaths(body.value), ['extra_field'], ...beyond]) {
          for (const value of [undefined, ...HOSTILE_VALUES]) changes.push({ slot: 'field', at, value });
        }
      }
    }
    return changes;
  }

  /** The request of `op` with `change` applied to its valid form; `target` picks the repository a read names. */
  probe(op: Operation, change: Change, target: 'public' | 'private'): Probe {
    const f = this.fixtures;
    let path = op.path.replace(/\{([^}]+)\}\*?/g, (_, name: string) => {
      if (change.slot === 'path' && change.name === name) return change.value;
      const p = op.parameters.find((x) => x.name === name && x.in === 'path')!;
      return encodeURIComponent(this.parameterValue(op, p, target)!);
    });
    const query: string[] = [];
    for (const p of op.parameters.filter((x) => x.in === 'query')) {
      if (change.slot === 'query' && change.name === p.name) query.push(`${p.name}=${change.value}`);
      else if (change.slot === 'query-twice' && change.name === p.name) query.push(`${p.name}=1`, `${p.name}=2`);
      else if (p.required) query.push(`${p.name}=${encodeURIComponent(this.parameterValue(op, p, target)!)}`);
    }
    if (change.slot === 'query-extra') query.push(change.value);
    if (query.length) path += `?${query.join('&')}`;

    const headers: Record<string, string> = { authorization: `Bearer ${f.tokens.owner}` };
    let body: Buffer | undefined;
    const valid = this.validBody(op);
    if (valid) {
      headers['content-type'] = change.slot === 'content-type' ? change.value : valid.type;
      if (change.slot === 'body') body = Buffer.from(change.value);
      else if (Buffer.isBuffer(valid.value)) body = valid.value;
      else {
        const value = change.slot === 'field' ? withField(valid.value, change.at, change.value) : valid.value;
        body = Buffer.from(headers['content-type'] === 'application/x-www-form-urlencoded' ? new URLSearchParams(flat(value)).toString() : JSON.stringify(value));
      }
    }
    if (change.slot === 'header') {
      if (change.value === undefined) delete headers[change.name];
      else headers[change.name] = change.value;
    }
    return { operation: op.id, change: describeChange(change), method: op.method, path, headers, body };
  }
}

/** A copy of `value` with the field at `at` set to `replacement` (removed when undefined). */
function withField(value: Json, at: string[], replacement: Json | undefined): Json {
  const copy = structuredClone(value) as Record<string, Json>;
  let parent = copy;
  for (const key of at.slice(0, -1)) {
    const next = parent[key];
    if (next === null || typeof next !== 'object') return copy;
    parent = next as Record<string, Json>;
  }
  const last = at[at.length - 1]!;
  if (replacement === undefined) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = replacement;
  return copy;
}

const flat = (value: Json): Record<string, string> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]))
    : { value: JSON.stringify(value) };

/**
 * The run's requests: the operations interleaved (one change of each in turn), each
 * operation's changes shuffled by `seed`, until `count` requests; past the last change, again
 * from the first. A read names the public or the private repository, at random.
 */
export function* schedule(plan: BadInputPlan, seed: number, count: number): Generator<[Operation, Change, 'public' | 'private']> {
  const next = seededRandom(seed);
  const queues = plan.operations.map((op) => {
    const changes = plan.changesOf(op);
    for (let i = changes.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [changes[i], changes[j]] = [changes[j]!, changes[i]!];
    }
    // Each operation's valid request goes first: its answer shows the others reach past it.
    return [{ slot: 'none' } as const, ...changes];
  });
  const longest = Math.max(...queues.map((changes) => changes.length));
  for (let sent = 0; ; ) {
    for (let i = 0; i < longest; i++) {
      for (const [k, changes] of queues.entries()) {
        if (i >= changes.length) continue;
        if (sent++ >= count) return;
        yield [plan.operations[k]!, changes[i]!, next() < 0.5 ? 'public' : 'private'];
      }
    }
  }
}

// ---- sending --------------------------------------------------------------------------------

export interface Answer {
  status: number;
  /** The first KiB of the body. */
  body: string;
}

/**
 * Sends `probe` to `base` and resolves with its answer, or with undefined when none came
 * (connection closed or reset before a status line, or `timeoutMs` passed).
 */
export function send(base: URL, probe: Probe, agent: Agent, timeoutMs = 30_000): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (a: Answer | undefined) => {
      if (!settled) resolve(a);
      settled = true;
    };
    const headers = { ...probe.headers, ...(probe.body ? { 'content-length': String(probe.body.length) } : {}) };
    const req = request({ host: base.hostname, port: base.port, method: probe.method, path: probe.path, headers, agent, timeout: timeoutMs }, (res) => {
      const parts: Buffer[] = [];
      let kept = 0;
      res.on('data', (d: Buffer) => {
        if (kept < 1024) parts.push(d);
        kept += d.length;
      });
      res.on('end', () => settle({ status: res.statusCode ?? 0, body: Buffer.concat(parts).subarray(0, 1024).toString() }));
      res.on('error', () => settle({ status: res.statusCode ?? 0, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    // A server that answers before reading a large body (413, 401) may reset the connection
    // while the body is still going out: the answer, when one came, is what counts.
    req.on('error', () => settle(undefined));
    req.end(probe.body);
  });
}

export interface RunReport {
  seed: number;
  tried: number;
  /** Answers by status code. */
  statuses: Record<number, number>;
  /** The status of each operation's valid request (its first), by operation id. */
  valid: Record<string, number>;
  /** Answers of 500 or more, and requests no answer came to. */
  failures: { probe: string; answer: string }[];
  seconds: number;
}

/**
 * Runs `count` probes of `plan` against `url` one after another; `renewScratch` makes a new
 * scratch repository (called after a reshaping operation succeeded).
 */
export async function runBadInput(options: {
  url: string;
  plan: BadInputPlan;
  seed: number;
  count: number;
  renewScratch: () => Promise<Fixtures['scratch']>;
  onProgress?: (report: RunReport) => void;
}): Promise<RunReport> {
  const base = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const started = performance.now();
  const report: RunReport = { seed: options.seed, tried: 0, statuses: {}, valid: {}, failures: [], seconds: 0 };
  try {
    for (const [op, change, target] of schedule(options.plan, options.seed, options.count)) {
      const probe = options.plan.probe(op, change, target);
      let answer: Answer | undefined;
      try {
        answer = await send(base, probe, agent);
      } catch (e) {
        // Node refused to send it (a header value it will not write): not a request tried.
        if ((e as NodeJS.ErrnoException).code?.startsWith('ERR_')) continue;
        throw e;
      }
      report.tried++;
      const what = `${probe.operation} ${probe.method} ${probe.path.slice(0, 200)} [${probe.change}]`;
      if (!answer) {
        // A refusal that closes the connection early (413 on a large body) may lose its answer
        // to a reset; the same request sent again must be answered, or the server failed.
        answer = await send(base, probe, agent);
        if (!answer) report.failures.push({ probe: what, answer: 'no answer' });
      }
      if (answer) {
        report.statuses[answer.status] = (report.statuses[answer.status] ?? 0) + 1;
        if (change.slot === 'none') report.valid[op.id] = answer.status;
        if (answer.status >= 500) report.failures.push({ probe: what, answer: `${answer.status} ${answer.body}` });
        if (answer.status < 300 && options.plan.reshapes(op.id)) options.plan.replaceScratch(await options.renewScratch());
      }
      if (report.tried % 1000 === 0) options.onProgress?.({ ...report, seconds: (performance.now() - started) / 1000 });
    }
  } finally {
    agent.destroy();
  }
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

/** A new scratch repository of the organization, with tags, named `scratch-<n>`. */
export function scratchMaker(api: Api, fixtures: Fixtures) {
  let n = 0;
  return () => repoWithTag(api, fixtures.tokens.owner, fixtures.org, `scratch-${++n}`, 'public');
}

/**
 * A whole run on a fresh test server (ephemeral port, temporary data directory, answers checked
 * against the contract): fixtures, `count` probes, then whether the server still answers. The
 * VM guest assets are there (test/support/vm-assets.ts) but VMs are capped at none, so a
 * request valid enough to boot one stops at the cap (429).
 */
export async function badInputRun(count: number, seed: number, onProgress?: (report: RunReport) => void): Promise<RunReport & { upAfter: boolean }> {
  const server = await startTestServer({ SNAPFORK_VM_MAX_RUNNING: '0', SNAPFORK_VM_ASSETS: await buildVmAssets() });
  try {
    const api: Api = (path, init = {}) => server.api(path, init);
    const fixtures = await setUpFixtures(api, (user, org, readOnly) => server.token(user, { org, scopes: readOnly ? ['repo:read'] : undefined }));
    const plan = new BadInputPlan(loadOperations(), fixtures);
    const report = await runBadInput({ url: server.url, plan, seed, count, renewScratch: scratchMaker(api, fixtures), onProgress });
    const health = await server.api('/healthz');
    return { ...report, upAfter: health.status === 200 };
  } finally {
    await server.stop();
  }
}
