/**
 * A real snapfork server for tests: ephemeral port, temporary data directory, real SQLite and
 * real files, every answer checked against openapi/ (validateResponses).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { JWK } from 'jose';
import type { DestinationStream } from 'pino';
import { expect } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import type { Scope } from '../../src/domain/principal.js';
import type { ChunkCodec } from '../../src/lib/chunk-codec.js';
import { mintToken, startServer, type RunningServer } from '../../src/main.js';
import { tarOf, tempDir } from './trees.js';

export interface TestServer {
  url: string;
  config: Config;
  dataDir: string;
  token(user: string, options?: { org?: string; scopes?: Scope[]; ttlSeconds?: number }): Promise<string>;
  api(path: string, init?: ApiInit): Promise<ApiResponse>;
  /** Creates `name` in the token's own namespace; fails the test unless it answers 201. Resolves with its JSON. */
  createRepo(token: string, name: string, visibility?: 'public' | 'internal' | 'private'): Promise<{ id: number }>;
  /**
   * Pushes a tree of `files` (relative path -> content) as `fullName:tag` through the native
   * tar push; fails the test unless it answers 201. Resolves with the push's JSON answer.
   */
  pushFiles(token: string, fullName: string, tag: string, files: Record<string, string | Buffer>): Promise<{ commit_id: string; bytes: number }>;
  /** Chunks in the chunk store's index, read beside the running server. */
  chunkCount(): number;
  /** Row counts of every table of the metadata database. */
  metadataRows(): Record<string, number>;
  /** The private JWK the server signs tokens with, read from its metadata database. */
  signingKey(): JWK;
  /**
   * Runs `sql` on the metadata database beside the running server (WAL lets it): a test
   * removes what it proves the server never reads.
   */
  alterMetadata(sql: string): void;
  /**
   * Stops this server, keeping its data directory, and starts another on it with the same
   * environment but for `env`'s changes.
   */
  restart(env?: Record<string, string>): Promise<TestServer>;
  stop(): Promise<void>;
}

/** A fetch Response whose JSON is untyped: tests assert its shape field by field. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ApiResponse = Omit<Response, 'json'> & { json(): Promise<any> };

export interface ApiInit {
  method?: string;
  token?: string;
  json?: unknown;
  body?: RequestInit['body'] | NodeJS.ReadableStream;
  headers?: Record<string, string>;
}

/** Row counts of every table in a SQLite file, read-only (WAL lets it run beside the server). */
function rowCounts(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[];
    return Object.fromEntries(tables.map(({ name }) => [name, (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n]));
  } finally {
    db.close();
  }
}

export interface TestServerOptions {
  /** The data directory lies this far below a fresh temporary directory. */
  subdir?: string;
  /** An existing data directory instead. */
  dataDir?: string;
  /** Receives the server's JSON log lines, at `info` unless `env` sets SNAPFORK_LOG_LEVEL. */
  logDestination?: DestinationStream;
  /** The server's chunk codec (ServerOptions.chunkCodec), closed when it stops; not carried over by restart(). */
  chunkCodec?: ChunkCodec;
}

/**
 * A test server logs nothing, unless `options.logDestination` takes its lines or
 * SNAPFORK_TEST_LOG_LEVEL (e.g. `info`) asks for them on stderr while debugging a test.
 */
export async function startTestServer(env: Record<string, string> = {}, options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? join(await mkdtemp(join(tmpdir(), 'snapfork-test-')), options.subdir ?? '');
  const debugLevel = process.env.SNAPFORK_TEST_LOG_LEVEL;
  const logLevel = options.logDestination ? 'info' : (debugLevel ?? 'silent');
  const config = loadConfig({ SNAPFORK_LOG_LEVEL: logLevel, ...env }, { host: '127.0.0.1', port: 0, dataDir });
  const logDestination = options.logDestination ?? (debugLevel ? process.stderr : undefined);
  const server: RunningServer = await startServer(config, { validateResponses: true, logDestination, chunkCodec: options.chunkCodec });
  const api: TestServer['api'] = (path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    let body = init.body as RequestInit['body'];
    if (init.json !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(init.json);
    }
    return fetch(server.url + path, {
      method: init.method ?? 'GET',
      headers,
      body,
      ...(body && typeof (body as { pipe?: unknown }).pipe === 'function' ? { duplex: 'half' } : {}),
    });
  };
  return {
    url: server.url,
    config,
    dataDir,
    token: (user, options = {}) =>
      mintToken(config, {
        user,
        org: options.org,
        scopes: options.scopes ?? ['repo:read', 'repo:write'],
        ttlSeconds: options.ttlSeconds ?? 3600,
      }),
    api,
    async createRepo(token, name, visibility = 'private') {
      const res = await api('/api/v1/user/repos', { method: 'POST', token, json: { name, visibility } });
      expect(res.status).toBe(201);
      return res.json();
    },
    async pushFiles(token, fullName, tag, files) {
      const dir = await tempDir();
      for (const [path, content] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(join(dir, path), content);
      }
      const res = await api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, {
        method: 'PUT',
        token,
        body: await tarOf(dir),
        headers: { 'content-type': 'application/x-tar' },
      });
      await rm(dir, { recursive: true, force: true });
      expect(res.status).toBe(201);
      return res.json();
    },
    chunkCount: () => rowCounts(join(dataDir, 'chunks', 'index.db')).chunks ?? 0,
    metadataRows: () => rowCounts(join(dataDir, 'snapfork.db')),
    signingKey: () => {
      const db = new Database(join(dataDir, 'snapfork.db'), { readonly: true });
      try {
        return JSON.parse((db.prepare('SELECT jwk FROM signing_keys').get() as { jwk: string }).jwk) as JWK;
      } finally {
        db.close();
      }
    },
    alterMetadata: (sql) => {
      const db = new Database(join(dataDir, 'snapfork.db'));
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    restart: async (changes = {}) => {
      await server.close();
      return startTestServer({ ...env, ...changes }, { ...options, chunkCodec: undefined, dataDir });
    },
    stop: async () => {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
