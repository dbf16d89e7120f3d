/**
 * Group commit for SQLite: many transactions made durable by one fsync.
 *
 * With `synchronous = FULL`, SQLite syncs the write-ahead log inside every COMMIT, on the main
 * thread: the event loop stops for each fsync, and 64 clients forking at once wait for 64 of them
 * in a row (issue 15: ~80 durable forks/s). `synchronous = NORMAL` in WAL mode is FULL minus
 * exactly that sync (SQLite still syncs the log before each checkpoint and when it starts reusing
 * it), so the database runs with NORMAL and this module adds the sync back, off the main thread
 * and shared: a caller whose statements wrote waits, after releasing the connection, for one
 * fdatasync of the log that began after its commit; every commit made while one sync runs rides
 * on the next. Nothing is acknowledged before it is on disk, as with FULL.
 *
 * What differs from FULL: another request may read a commit before its sync has finished (its own
 * writer has not been answered yet). A write that depends on it lands later in the same log, so
 * it is never durable without it.
 */
import { open } from 'node:fs/promises';
import type { DatabaseConnection, Driver, QueryCompiler, TransactionSettings } from 'kysely';
import { SqliteDialect, type SqliteDialectConfig } from 'kysely';

export class WalSync {
  /** Statements that wrote so far (counted before they run: a failed one costs a needless sync). */
  private written = 0;
  /** `written` as of the start of the last sync that finished. */
  private synced = 0;
  private running: Promise<void> | undefined;
  private completedSyncs = 0;

  /** `walFile`: the database's `-wal` file. */
  constructor(private readonly walFile: string) {}

  /** A statement that writes is about to run. */
  noteWrite(): void {
    this.written++;
  }

  /** A mark to pass to durable(): the writes so far. */
  mark(): number {
    return this.written;
  }

  /** Syncs of the log finished so far (for tests and metrics: fewer than the commits under load). */
  get syncs(): number {
    return this.completedSyncs;
  }

  /**
   * Resolves once every write made before this call is on disk; at once when none was made since
   * `since` (a mark). Rejects when the sync fails (the write may be lost: never acknowledge it).
   */
  async durable(since: number): Promise<void> {
    const target = this.written;
    if (target === since) return;
    while (this.synced < target) {
      this.running ??= this.sync().finally(() => (this.running = undefined));
      await this.running;
    }
  }

  private async sync(): Promise<void> {
    const upTo = this.written;
    const log = await open(this.walFile, 'r').catch((e: NodeJS.ErrnoException) => {
      // No log: SQLite removed it after checkpointing everything into the synced database file.
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    try {
      await log?.datasync();
    } finally {
      await log?.close();
    }
    this.synced = Math.max(this.synced, upTo);
    this.completedSyncs++;
  }
}

/**
 * Kysely's SQLite dialect with group commit: the connection is released before the wait for
 * durability (WalSync.durable), so the next transaction runs while this one's sync is under way.
 * Kysely awaits releaseConnection before it answers a query, or a `db.connection()` callback
 * (the metadata store runs its transactions in one), so callers see their writes durable.
 */
export class GroupCommitSqliteDialect extends SqliteDialect {
  constructor(
    config: SqliteDialectConfig,
    private readonly wal: WalSync,
  ) {
    super(config);
  }

  override createDriver(): Driver {
    return new GroupCommitDriver(super.createDriver(), this.wal);
  }
}

class GroupCommitDriver implements Driver {
  /** The writes noted when the connection (SQLite has one) was last acquired. */
  private mark = 0;

  constructor(
    private readonly inner: Driver,
    private readonly wal: WalSync,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    this.mark = this.wal.mark();
    return connection;
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const mark = this.mark;
    await this.inner.releaseConnection(connection);
    await this.wal.durable(mark);
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.inner.beginTransaction(connection, settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(connection);
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.rollbackTransaction(connection);
  }

  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.savepoint!(connection, name, compile);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.rollbackToSavepoint!(connection, name, compile);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.releaseSavepoint!(connection, name, compile);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
