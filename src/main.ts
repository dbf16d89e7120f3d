/**
 * The composition root: opens the stores (the metadata in SQLite under the data directory, or in
 * PostgreSQL when SNAPFORK_DATABASE_URL names one; the chunks' packs under the data directory, or
 * in an S3 bucket when SNAPFORK_S3_* name one), wires the domain services over them and the
 * QEMU runtime, and serves HTTP. The only place (with config.ts) that knows which
 * implementations run.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DestinationStream, Logger } from 'pino';
import { TokenService } from './auth/token-service.js';
import type { Config } from './config.js';
import { AccessPolicy } from './domain/access-policy.js';
import { AccountService } from './domain/account.service.js';
import type { Scope } from './domain/principal.js';
import { createServices } from './domain/services.js';
import { createApp, type AppOptions } from './http/app.js';
import { createLogger } from './http/logging.js';
import { Metrics } from './http/metrics.js';
import type { ChunkCodec } from './lib/chunk-codec.js';
import { ChunkCodecPool } from './lib/chunk-codec-pool.js';
import { fsyncDir } from './lib/durable-fs.js';
import { sha256 } from './lib/sha256.js';
import { useZstd, zstdImplementation } from './lib/zstd.js';
import { Ext4DatasetImages } from './runtime/dataset-images.js';
import { serveNbd } from './runtime/nbd/nbd-server.js';
import type { ExportDisk } from './runtime/qemu/disk-export.js';
import { guestBaseImage } from './runtime/qemu/guest-assets.js';
import { holdsSocketPaths, QemuRuntime } from './runtime/qemu/qemu-runtime.js';
import { S3BlobBackend } from './store/blobs/s3.js';
import { CHUNK_INDEX_FILE, openFsChunkStore } from './store/fs/chunk-store.js';
import { FsExecLogStore } from './store/fs/exec-log-store.js';
import { openPackChunkStore, ORPHAN_GRACE_MS } from './store/packs/pack-store.js';
import { SqliteChunkIndex } from './store/packs/sqlite-chunk-index.js';
import { PostgresChunkIndex } from './store/postgres/chunk-index.js';
import { openPostgresMetadataStore } from './store/postgres/database.js';
import { openSqliteMetadataStore } from './store/sqlite/database.js';
import type { ChunkStore, MetadataStore } from './store/types.js';

export const METADATA_FILE = 'snapfork.db';
export const CHUNKS_DIR = 'chunks';
/** One work directory per running VM (src/runtime/qemu). */
export const VMS_DIR = 'vms';
/** Read-only images of datasets that VMs mount at /data (src/runtime/dataset-images.ts). */
export const DATASETS_DIR = 'datasets';
/** The VMs' exec logs (src/store/fs/exec-log-store.ts). */
export const VM_LOGS_DIR = 'vm-logs';

/**
 * Where VMs' work directories go: `<dataDir>/vms`, unless a deep data directory would make their
 * Unix socket paths too long (108 bytes), then a directory of this data directory's own in the
 * system's temporary directory, so that a server never fails to start for its path.
 */
function vmRuntimeDir(dataDir: string): string {
  const inData = join(dataDir, VMS_DIR);
  if (holdsSocketPaths(inData)) return inData;
  return join(tmpdir(), `snapfork-vms-${sha256(dataDir).slice(0, 16)}`);
}

/** The metadata store `config` selects: PostgreSQL at its databaseUrl, else SQLite in its data directory. */
function openMetadataStore(config: Config): Promise<MetadataStore> {
  return config.databaseUrl === undefined
    ? openSqliteMetadataStore(join(config.dataDir, METADATA_FILE))
    : openPostgresMetadataStore(config.databaseUrl);
}

/**
 * The chunk store `config` selects. Without S3: packs and their SQLite index under
 * <dataDir>/chunks, locked to this process. With S3: packs in the bucket, indexed in the
 * PostgreSQL database when databaseUrl is set (any number of servers share bucket and
 * database), else in <dataDir>/chunks/index.db, for one server over the bucket.
 */
async function openChunkStore(config: Config, codec: ChunkCodec): Promise<ChunkStore> {
  const dir = join(config.dataDir, CHUNKS_DIR);
  if (config.s3 === undefined) return openFsChunkStore(dir, { codec });
  if (config.databaseUrl === undefined) {
    await mkdir(dir, { recursive: true });
    // A local index knows only this server's packs: were a second server (misconfigured) given
    // the same bucket and prefix, each would take the other's packs for orphans. Nothing is
    // deleted at open then; a crash's leftovers wait for garbage collection.
    const index = SqliteChunkIndex.open(join(dir, CHUNK_INDEX_FILE));
    return openPackChunkStore(new S3BlobBackend(config.s3), index, { orphanGraceMs: Infinity, codec });
  }
  // No lock covers a bucket: another server may be between committing its packs and
  // publishing them, so only orphans older than the grace are removed.
  return openPackChunkStore(new S3BlobBackend(config.s3), await PostgresChunkIndex.open(config.databaseUrl), { orphanGraceMs: ORPHAN_GRACE_MS, codec });
}

/** A pool whose workers load zstd while the server starts, so that its first push does not wait for them. */
function startedPool(): ChunkCodecPool {
  const pool = new ChunkCodecPool();
  pool.start();
  return pool;
}

export interface ServerOptions extends AppOptions {
  /** Where the JSON log lines go (at config.logLevel); stdout by default. */
  logDestination?: DestinationStream;
  /**
   * Hashes and compresses pushed chunks; a ChunkCodecPool of one worker thread per core by
   * default. The server's from now on: closed when it stops.
   */
  chunkCodec?: ChunkCodec;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:3000 (the real port when 0 was asked for). */
  url: string;
  /** The server's logger, for lines of its owner (the signal that stops it). */
  logger: Logger;
  /** Stops accepting connections, lets requests in flight finish, stops every VM, then closes the stores. */
  close(): Promise<void>;
}

/** This server's id, in its data directory (storage/README.md). */
export const SERVER_ID_FILE = 'server-id';

/**
 * The id this server records on the VMs it runs (VmParts.host), created on first start and kept
 * in the data directory: a restarted server finds its previous process's VMs by it.
 */
async function serverId(dataDir: string): Promise<string> {
  const file = join(dataDir, SERVER_ID_FILE);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = randomUUID();
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(`${id}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  await fsyncDir(dataDir);
  return id;
}

/** How long a graceful shutdown waits for requests in flight before cutting them. */
const SHUTDOWN_GRACE_MS = 10_000;

export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const logger = createLogger(config.logLevel, options.logDestination);
  // Before anything compresses: the pool's workers load the implementation chosen here.
  if (config.zstd !== undefined) useZstd(config.zstd);
  await mkdir(config.dataDir, { recursive: true });
  const metadata = await openMetadataStore(config);
  const chunks = await openChunkStore(config, options.chunkCodec ?? startedPool());
  const tokens = await TokenService.open(config, metadata);
  // Each VM's base disk is served to its QEMU over NBD, read from the chunks as the guest reads it.
  const exportDisk: ExportDisk = async (disk, socketPath) => {
    const nbd = await serveNbd(socketPath, disk, {
      // One export serves every VM of its disk (one connection each) and each snapshot's map of it.
      maxConnections: 2 * config.vms.maxRunning + 2,
      onReadError: (error, { offset, length }) => logger.error({ err: error, nbd_socket: socketPath, offset, length }, 'VM disk read failed'),
    });
    return { filename: `nbd+unix:///?socket=${socketPath}`, close: () => nbd.close() };
  };
  const runtime = await QemuRuntime.open({ runtimeDir: vmRuntimeDir(config.dataDir), assetsDir: config.vms.assetsDir, exportDisk, cgroups: config.vms.cgroups, log: logger });
  const execLogs = new FsExecLogStore(join(config.dataDir, VM_LOGS_DIR));
  const metrics = new Metrics();
  const services = createServices(metadata, chunks, {
    runtime,
    baseImage: guestBaseImage(config.vms.assetsDir),
    datasets: await Ext4DatasetImages.open(join(config.dataDir, DATASETS_DIR)),
    caps: config.vms,
    execLogs,
    host: await serverId(config.dataDir),
  }, { telemetry: metrics.telemetry, gc: config.gc, quotas: config.quotas });
  metrics.countRunningVms(() => services.vms.runningCount());
  await services.vms.reconcile();
  await services.jobs.abandonLeftovers();
  const app = createApp(services, tokens, config, metrics, logger, options);

  const { headersMs, idleMs } = config.timeouts;
  const server = createServer(
    {
      headersTimeout: headersMs,
      // No deadline for a whole request: pushes of large images upload for hours. The body
      // rate and the deadline of parsed bodies (http/request-limits.ts) cut slow bodies instead.
      requestTimeout: 0,
      // Node checks header deadlines on this period (30 s by default, which would double a short one).
      connectionsCheckingInterval: Math.max(10, Math.ceil(headersMs / 4)),
    },
    app,
  );
  server.timeout = idleMs;
  // Node closes a kept-alive connection after 5 s between requests by default, racing clients
  // that reuse it at that moment ("other side closed" on a POST, which they do not retry):
  // an idle connection lives as long as any other.
  server.keepAliveTimeout = idleMs;
  server.listen(config.port, config.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  // The message keeps the form scripts wait for (`listening on <url> `); the fields are for queries.
  const zstd = zstdImplementation();
  logger.info({ url, data_dir: config.dataDir, zstd }, `snapfork listening on ${url} (data in ${config.dataDir}, zstd ${zstd})`);
  // Once, after the line scripts wait for: the VMs run all the same.
  if (runtime.withoutCgroups) logger.warn({ reason: runtime.withoutCgroups }, `VM processes run without cgroup memory and CPU limits: ${runtime.withoutCgroups}`);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await drained;
      clearTimeout(timer);
      // Background jobs (a collection, an fsck) finish before the stores they use close.
      await services.jobs.settled();
      // Every VM is stopped before the stores its disks are read from close.
      await services.vms.close();
      await runtime.close();
      await chunks.close();
      await metadata.close();
    })());
  return { url, logger, close };
}

export interface MintTokenOptions {
  user: string;
  org?: string;
  scopes: readonly Scope[];
  ttlSeconds: number;
}

/**
 * Creates the user (and the organization of `org`, owned by the user) if needed and signs a
 * token for them. Opens only the metadata store and the key, so it is safe while a server runs.
 */
export async function mintToken(config: Config, options: MintTokenOptions): Promise<string> {
  await mkdir(config.dataDir, { recursive: true });
  const metadata = await openMetadataStore(config);
  try {
    const accounts = new AccountService(metadata, new AccessPolicy(metadata));
    await accounts.principalFor(options.user, options.scopes, options.org);
    const tokens = await TokenService.open(config, metadata);
    return await tokens.sign({ sub: options.user, org: options.org, scopes: options.scopes, ttlSeconds: options.ttlSeconds });
  } finally {
    await metadata.close();
  }
}
