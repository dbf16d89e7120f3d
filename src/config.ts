import { join, resolve } from 'node:path';
import type { QuotaLimits } from './domain/model.js';
import type { ZstdImplementation } from './lib/zstd.js';

/** Everything snapfork reads from its environment, parsed once and frozen. */
export interface Config {
  readonly host: string;
  readonly port: number;
  /** Holds snapfork.db (unless databaseUrl is set), chunks/ and the VMs' files (storage/README.md). */
  readonly dataDir: string;
  /**
   * The PostgreSQL database that holds the metadata (postgres://user:password@host:port/db), and
   * the chunk index too when `s3` is set, for several servers sharing one; undefined: SQLite at
   * <dataDir>/snapfork.db (and <dataDir>/chunks/index.db).
   */
  readonly databaseUrl?: string;
  readonly auth: {
    /** `iss` of the tokens this server signs (and accepts). */
    readonly issuer: string;
    /** `aud` of the tokens this server signs (and accepts). */
    readonly audience: string;
    /** Optionally also accept tokens of an external issuer, verified with its JWKS. */
    readonly external?: { readonly jwksUrl: string; readonly issuer: string; readonly audience: string };
  };
  /** Largest tar body a push accepts, in bytes (uncompressed size is not limited). */
  readonly maxPushBytes: number;
  /**
   * The base of every absolute URL the server prints (`https://host[/prefix]`, no trailing
   * slash), for a server behind a proxy; undefined: each request's own origin.
   */
  readonly publicUrl?: string;
  /**
   * How long a client may take to send a request. Pushes of large images upload for hours, so
   * no deadline covers a whole request: a body only has to keep arriving at a minimum rate.
   */
  readonly timeouts: {
    /** The request line and headers must arrive within this (Node's `headersTimeout`). */
    readonly headersMs: number;
    /** A JSON or form body (at most 1 MiB, parsed whole) must arrive within this once reading starts. */
    readonly bufferedBodyMs: number;
    /** Over each window this long, a body must bring at least `minBodyBytesPerSecond`. */
    readonly bodyRateWindowMs: number;
    readonly minBodyBytesPerSecond: number;
    /** A connection with no byte in either direction for this long is closed (Node's `timeout`). */
    readonly idleMs: number;
  };
  readonly vms: {
    /** The guest's `vmlinux` and `initrd.cpio` (scripts/vm/build-guest.sh builds them there). */
    readonly assetsDir: string;
    /** Caps on VMs booting or running at once (paused ones hold their memory, so they count); 0 runs none. */
    readonly maxRunning: number;
    readonly maxRunningPerOwner: number;
    /**
     * The most file content of a dataset that a VM mounts at /data: its image is built on this
     * host (a staged copy, then the image) once per tree. 1 GiB by default.
     */
    readonly maxDatasetBytes: number;
    /**
     * SNAPFORK_VM_CGROUPS: `auto` (the default) runs each VM in a cgroup of its own with memory and
     * CPU limits where the host's cgroups are writable, else without (logged at start); `off` never.
     */
    readonly cgroups: 'auto' | 'off';
  };
  /** Garbage collection (src/domain/gc.service.ts): how recent data protects itself, how long deleted repositories stay. */
  readonly gc: {
    /** SNAPFORK_GC_GRACE_SECONDS, 24 h by default: the upload grace of a delta push. */
    readonly graceMs: number;
    /** SNAPFORK_DELETED_RETENTION_SECONDS, 7 days by default: a deleted repository is restorable meanwhile. */
    readonly deletedRetentionMs: number;
  };
  /**
   * An S3 bucket for chunk packs (SNAPFORK_S3_*); undefined: packs stay under dataDir. Without
   * databaseUrl their index stays under dataDir, so only one server may use the bucket and prefix.
   */
  readonly s3?: S3Config;
  /** The least severe log lines written (pino's levels, or `silent` for none). */
  readonly logLevel: LogLevel;
  /**
   * Every namespace's quota unless an administrator set its own (SNAPFORK_QUOTA_BYTES,
   * SNAPFORK_QUOTA_REPOSITORIES, SNAPFORK_QUOTA_RUNNING_VMS); null, the default: no limit.
   */
  readonly quotas: Readonly<QuotaLimits>;
  /**
   * SNAPFORK_ZSTD: the zstd build every compression runs on, `native` (libzstd through zstd-napi,
   * failing the start where it is not built) or `wasm` (zstd-codec); undefined, the default:
   * native where it is built, else wasm.
   */
  readonly zstd?: ZstdImplementation;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface S3Config {
  /** The store's base URL, e.g. http://127.0.0.1:17480 (Ceph RGW) or https://s3.eu-west-1.amazonaws.com. */
  readonly endpoint: string;
  readonly bucket: string;
  /** The region requests are signed for; us-east-1 when unset. */
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Bucket in the URL's path rather than its host name (RGW and most self-hosted stores). */
  readonly forcePathStyle: boolean;
  /** Prepended to every object key ("" or ending in "/"), so servers of several deployments can share a bucket. */
  readonly prefix: string;
}

export interface ConfigOverrides {
  host?: string;
  port?: number;
  dataDir?: string;
}

type Env = Record<string, string | undefined>;

function integerAtLeast(min: number, env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined) return fallback;
  // Number('') is 0: an empty value is a mistake, not a zero.
  const value = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new Error(`${name} must be ${min > 0 ? 'a positive' : 'a non-negative'} integer, got "${raw}"`);
  }
  return value;
}
const positiveInteger = (env: Env, name: string, fallback: number) => integerAtLeast(1, env, name, fallback);
const nonNegativeInteger = (env: Env, name: string, fallback: number) => integerAtLeast(0, env, name, fallback);
/** A non-negative integer, or null when the variable is unset. */
const optionalLimit = (env: Env, name: string): number | null => (env[name] === undefined ? null : nonNegativeInteger(env, name, 0));

function parsePort(raw: string, source: string): number {
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${source} must be a port number from 0 to 65535, got "${raw}"`);
  }
  return port;
}

/** An absolute http(s) URL without query, fragment or credentials, its trailing slashes removed. */
function parsePublicUrl(raw: string): string {
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || !['http:', 'https:'].includes(url.protocol) || url.search || url.hash || url.username || url.password) {
    throw new Error(`SNAPFORK_PUBLIC_URL must be an http(s) URL without query or fragment, e.g. https://snapfork.example.com, got "${raw}"`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** A postgres:// (or postgresql://) URL naming a database; the error never repeats its password. */
function parseDatabaseUrl(raw: string): string {
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || !['postgres:', 'postgresql:'].includes(url.protocol) || !url.hostname || url.pathname.length <= 1) {
    throw new Error('SNAPFORK_DATABASE_URL must be a PostgreSQL URL naming a database, e.g. postgres://user:password@host:5432/snapfork');
  }
  return raw;
}

function parseZstd(raw: string): ZstdImplementation {
  if (raw !== 'native' && raw !== 'wasm') throw new Error(`SNAPFORK_ZSTD must be native or wasm, got "${raw}"`);
  return raw;
}

function parseCgroups(raw: string): 'auto' | 'off' {
  if (raw !== 'auto' && raw !== 'off') throw new Error(`SNAPFORK_VM_CGROUPS must be auto or off, got "${raw}"`);
  return raw;
}

function parseLogLevel(raw: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === raw);
  if (level === undefined) throw new Error(`SNAPFORK_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${raw}"`);
  return level;
}

const S3_REQUIRED = ['SNAPFORK_S3_ENDPOINT', 'SNAPFORK_S3_BUCKET', 'SNAPFORK_S3_ACCESS_KEY_ID', 'SNAPFORK_S3_SECRET_ACCESS_KEY'] as const;
const S3_OPTIONAL = ['SNAPFORK_S3_REGION', 'SNAPFORK_S3_FORCE_PATH_STYLE', 'SNAPFORK_S3_PREFIX'] as const;

/** The S3 section when any SNAPFORK_S3_* variable is set; a half-configured set stops the start. */
function parseS3(env: Env): S3Config | undefined {
  const set = [...S3_REQUIRED, ...S3_OPTIONAL].filter((name) => env[name] !== undefined);
  if (set.length === 0) return undefined;
  const missing = S3_REQUIRED.filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new Error(`S3 storage is half configured: ${set.join(', ')} set but ${missing.join(', ')} missing (all of ${S3_REQUIRED.join(', ')} are needed)`);
  }
  const endpoint = env.SNAPFORK_S3_ENDPOINT!;
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
  if (!url || !['http:', 'https:'].includes(url.protocol) || url.search || url.hash || url.username || url.password) {
    throw new Error(`SNAPFORK_S3_ENDPOINT must be an http(s) URL without credentials, query or fragment, got "${endpoint}"`);
  }
  const pathStyle = env.SNAPFORK_S3_FORCE_PATH_STYLE ?? 'false';
  if (pathStyle !== 'true' && pathStyle !== 'false') {
    throw new Error(`SNAPFORK_S3_FORCE_PATH_STYLE must be true or false, got "${pathStyle}"`);
  }
  const prefix = (env.SNAPFORK_S3_PREFIX ?? '').replace(/^\/+|\/+$/g, '');
  if (!/^[a-z0-9._/-]*$/.test(prefix)) {
    throw new Error(`SNAPFORK_S3_PREFIX may hold only a-z, 0-9, ".", "_", "-" and "/", got "${env.SNAPFORK_S3_PREFIX}"`);
  }
  return Object.freeze({
    endpoint,
    bucket: env.SNAPFORK_S3_BUCKET!,
    region: env.SNAPFORK_S3_REGION || 'us-east-1',
    accessKeyId: env.SNAPFORK_S3_ACCESS_KEY_ID!,
    secretAccessKey: env.SNAPFORK_S3_SECRET_ACCESS_KEY!,
    forcePathStyle: pathStyle === 'true',
    prefix: prefix ? `${prefix}/` : '',
  });
}

/**
 * Reads SNAPFORK_HOST, SNAPFORK_PORT (or PORT), SNAPFORK_DATA_DIR, SNAPFORK_DATABASE_URL, SNAPFORK_JWT_ISSUER,
 * SNAPFORK_JWT_AUDIENCE, SNAPFORK_JWKS_URL with SNAPFORK_JWKS_ISSUER and SNAPFORK_JWKS_AUDIENCE,
 * SNAPFORK_MAX_PUSH_BYTES, SNAPFORK_PUBLIC_URL, and the timeouts SNAPFORK_HEADERS_TIMEOUT_MS,
 * SNAPFORK_BODY_TIMEOUT_MS, SNAPFORK_BODY_RATE_WINDOW_MS, SNAPFORK_BODY_MIN_RATE (bytes per second)
 * and SNAPFORK_IDLE_TIMEOUT_MS, and for VMs SNAPFORK_VM_ASSETS and the caps SNAPFORK_VM_MAX_RUNNING,
 * SNAPFORK_VM_MAX_RUNNING_PER_OWNER and SNAPFORK_VM_MAX_DATASET_BYTES, SNAPFORK_VM_CGROUPS, and for S3 storage
 * SNAPFORK_S3_ENDPOINT, SNAPFORK_S3_BUCKET, SNAPFORK_S3_ACCESS_KEY_ID, SNAPFORK_S3_SECRET_ACCESS_KEY,
 * SNAPFORK_S3_REGION, SNAPFORK_S3_FORCE_PATH_STYLE and SNAPFORK_S3_PREFIX, SNAPFORK_LOG_LEVEL, SNAPFORK_ZSTD, and the
 * default quotas SNAPFORK_QUOTA_BYTES, SNAPFORK_QUOTA_REPOSITORIES and SNAPFORK_QUOTA_RUNNING_VMS. Flags of `snapfork serve` (overrides) win over the environment.
 */
export function loadConfig(env: Env = process.env, overrides: ConfigOverrides = {}): Config {
  const portRaw = env.SNAPFORK_PORT ?? env.PORT;
  const jwksUrl = env.SNAPFORK_JWKS_URL;
  let external: Config['auth']['external'];
  if (jwksUrl) {
    const issuer = env.SNAPFORK_JWKS_ISSUER;
    const audience = env.SNAPFORK_JWKS_AUDIENCE;
    if (!issuer || !audience) {
      throw new Error('SNAPFORK_JWKS_URL needs SNAPFORK_JWKS_ISSUER and SNAPFORK_JWKS_AUDIENCE');
    }
    external = Object.freeze({ jwksUrl, issuer, audience });
  }
  const dataDir = resolve(overrides.dataDir ?? env.SNAPFORK_DATA_DIR ?? 'storage');
  return Object.freeze({
    host: overrides.host ?? env.SNAPFORK_HOST ?? '127.0.0.1',
    port: overrides.port ?? (portRaw === undefined ? 3000 : parsePort(portRaw, 'SNAPFORK_PORT')),
    dataDir,
    databaseUrl: env.SNAPFORK_DATABASE_URL ? parseDatabaseUrl(env.SNAPFORK_DATABASE_URL) : undefined,
    auth: Object.freeze({
      issuer: env.SNAPFORK_JWT_ISSUER ?? 'snapfork',
      audience: env.SNAPFORK_JWT_AUDIENCE ?? 'snapfork',
      external,
    }),
    maxPushBytes: positiveInteger(env, 'SNAPFORK_MAX_PUSH_BYTES', 1024 ** 4),
    publicUrl: env.SNAPFORK_PUBLIC_URL ? parsePublicUrl(env.SNAPFORK_PUBLIC_URL) : undefined,
    timeouts: Object.freeze({
      headersMs: positiveInteger(env, 'SNAPFORK_HEADERS_TIMEOUT_MS', 30_000),
      bufferedBodyMs: positiveInteger(env, 'SNAPFORK_BODY_TIMEOUT_MS', 30_000),
      bodyRateWindowMs: positiveInteger(env, 'SNAPFORK_BODY_RATE_WINDOW_MS', 30_000),
      // 8 KiB/s (64 kbit/s): far below any real upload, far above a trickle.
      minBodyBytesPerSecond: positiveInteger(env, 'SNAPFORK_BODY_MIN_RATE', 8 * 1024),
      idleMs: positiveInteger(env, 'SNAPFORK_IDLE_TIMEOUT_MS', 300_000),
    }),
    vms: Object.freeze({
      assetsDir: resolve(env.SNAPFORK_VM_ASSETS ?? join(dataDir, 'vm-assets')),
      maxRunning: nonNegativeInteger(env, 'SNAPFORK_VM_MAX_RUNNING', 8),
      maxRunningPerOwner: nonNegativeInteger(env, 'SNAPFORK_VM_MAX_RUNNING_PER_OWNER', 4),
      maxDatasetBytes: positiveInteger(env, 'SNAPFORK_VM_MAX_DATASET_BYTES', 1024 ** 3),
      cgroups: parseCgroups(env.SNAPFORK_VM_CGROUPS ?? 'auto'),
    }),
    gc: Object.freeze({
      graceMs: nonNegativeInteger(env, 'SNAPFORK_GC_GRACE_SECONDS', 24 * 60 * 60) * 1000,
      deletedRetentionMs: nonNegativeInteger(env, 'SNAPFORK_DELETED_RETENTION_SECONDS', 7 * 24 * 60 * 60) * 1000,
    }),
    s3: parseS3(env),
    logLevel: parseLogLevel(env.SNAPFORK_LOG_LEVEL ?? 'info'),
    quotas: Object.freeze({
      bytes: optionalLimit(env, 'SNAPFORK_QUOTA_BYTES'),
      repositories: optionalLimit(env, 'SNAPFORK_QUOTA_REPOSITORIES'),
      runningVms: optionalLimit(env, 'SNAPFORK_QUOTA_RUNNING_VMS'),
    }),
    zstd: env.SNAPFORK_ZSTD === undefined ? undefined : parseZstd(env.SNAPFORK_ZSTD),
  });
}
