import { Readable } from 'node:stream';
import { CliError, UsageError } from './errors.js';
import type { Reference, RepoPath } from './reference.js';

export const DEFAULT_URL = 'http://127.0.0.1:3000';

/** The server answered with an error status; the message is `<status> <server's reason>`. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    reason: string,
    /** The envelope's `details`, when it has any (a commit's 422 names the chunks to send in `missing`). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${status} ${reason}`);
    this.name = 'ApiError';
  }
}

export interface RequestOptions {
  /** Sent as a JSON body. */
  json?: unknown;
  /** The body: a buffer as is, or a stream sent without buffering it; needs `contentType`. */
  body?: Uint8Array | AsyncIterable<Uint8Array>;
  contentType?: string;
  query?: Record<string, string | number | undefined>;
  accept?: string;
  /** More request headers. */
  headers?: Record<string, string>;
}

type Env = Record<string, string | undefined>;

// Errors that mean no server answers at this address, as opposed to one that failed mid-way.
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The one way the CLI talks to a snapfork server: bearer token, JSON errors mapped to ApiError. */
export class ApiClient {
  private readonly base: URL;

  constructor(
    baseUrl: string,
    private readonly token: string | undefined,
  ) {
    let base: URL | undefined;
    try {
      base = new URL(baseUrl);
    } catch {
      // reported below
    }
    if (!base || (base.protocol !== 'http:' && base.protocol !== 'https:')) {
      throw new UsageError(`bad server URL "${baseUrl}": expected http(s)://host[:port]`);
    }
    this.base = base;
  }

  /** `--url`/`--token` win over SNAPFORK_URL/SNAPFORK_TOKEN. */
  static from(flags: { url?: string | undefined; token?: string | undefined }, env: Env): ApiClient {
    return new ApiClient(flags.url ?? env.SNAPFORK_URL ?? DEFAULT_URL, flags.token ?? env.SNAPFORK_TOKEN);
  }

  /** The server address as the user gave it, for messages. */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  /** Sends one request; resolves with a 2xx response, or throws ApiError / CliError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { ...options.headers, accept: options.accept ?? 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | Uint8Array | ReadableStream | undefined;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    } else if (options.body) {
      body = options.body instanceof Uint8Array ? options.body : Readable.toWeb(Readable.from(options.body));
      headers['content-type'] = options.contentType ?? 'application/octet-stream';
    }
    let response: Response;
    try {
      // duplex 'half' is what lets undici send a stream without buffering it first. A request
      // with a body is not redirected (the API never redirects one): to replay it on a redirect,
      // undici would copy every body it sends (a tee): sending 256 MiB in 8 MiB packs took 1.07 s
      // of CPU with the copy, 0.28 s without (the receiving side included).
      response = await fetch(url, { method, headers, body, duplex: 'half', ...(body === undefined ? {} : { redirect: 'error' }) });
    } catch (err) {
      throw this.networkError(err);
    }
    if (!response.ok) throw await this.apiError(response);
    return response;
  }

  /** `request` and parse the JSON answer. */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return this.readJson<T>(await this.request(method, path, options));
  }

  /** The JSON body of a response `request` returned (when its headers matter too). */
  async readJson<T>(response: Response): Promise<T> {
    try {
      return (await response.json()) as T;
    } catch (err) {
      throw this.networkError(err, 'the server sent a malformed JSON answer');
    }
  }

  /** A response body as chunks, with a dropped connection reported like any other network error. */
  async *stream(response: Response): AsyncGenerator<Uint8Array> {
    if (!response.body) return;
    try {
      for await (const chunk of response.body) yield chunk as Uint8Array;
    } catch (err) {
      throw this.networkError(err);
    }
  }

  private networkError(err: unknown, fallback?: string): Error {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
    const code = (cause as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && UNREACHABLE.has(code)) {
      return new CliError(`cannot reach ${this.url} (is the server running?)`);
    }
    // A local read error while streaming an upload (EACCES on a file, say) is the user's to see.
    if (typeof code === 'string' && !code.startsWith('UND_ERR') && cause instanceof Error) return cause;
    if (fallback && err instanceof SyntaxError) return new CliError(fallback);
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new CliError(`connection to ${this.url} failed: ${reason}`);
  }

  private async apiError(response: Response): Promise<ApiError> {
    const text = await response.text().catch(() => '');
    let reason: string | undefined;
    let details: Record<string, unknown> | undefined;
    try {
      const parsed = JSON.parse(text) as { error?: unknown; details?: unknown };
      if (typeof parsed.error === 'string') reason = parsed.error;
      if (typeof parsed.details === 'object' && parsed.details !== null) details = parsed.details as Record<string, unknown>;
    } catch {
      // not the JSON envelope: fall back to the status text
    }
    reason ??= response.statusText || text.replace(/\s+/g, ' ').trim().slice(0, 200) || 'request failed';
    if (response.status === 401 && !this.token) reason += ' (set SNAPFORK_TOKEN or pass --token)';
    return new ApiError(response.status, reason, details);
  }
}

const seg = encodeURIComponent;

/** `/api/v1/repos/{owner}/{repo}` with both names escaped. */
export const repoApiPath = (r: RepoPath): string => `/api/v1/repos/${seg(r.owner)}/${seg(r.repo)}`;

/** One tag: GET it for the commit it points at. */
export const tagApiPath = (r: Reference): string => `${repoApiPath(r)}/tags/${seg(r.tag)}`;

/** The delta transfer routes of a repository (openapi/snapfork.yaml, storage/README.md). */
export const transferApiPaths = (r: RepoPath) => {
  const repo = repoApiPath(r);
  return {
    missing: `${repo}/chunks/missing`,
    pack: `${repo}/chunks`,
    fetch: `${repo}/chunks/fetch`,
    commits: `${repo}/commits`,
    manifest: (commitId: string) => `${repo}/commits/${seg(commitId)}/manifest`,
  };
};

/** The commit a tag points at, or null when the repository has no such tag. */
export async function tagCommit(client: ApiClient, ref: Reference): Promise<string | null> {
  try {
    return (await client.json<{ commit_id: string }>('GET', tagApiPath(ref))).commit_id;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** The caller's login, from the token. */
export async function currentLogin(client: ApiClient): Promise<string> {
  return (await client.json<{ login: string }>('GET', '/api/v1/user')).login;
}
