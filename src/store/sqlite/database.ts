/**
 * The SQLite side of the metadata store: opening the database file, the SqlDialect of SQLite
 * and its driver errors. Everything that knows about better-sqlite3 lives here.
 */
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, sql, type SqliteDatabase, type SqliteStatement } from 'kysely';
import type { MetadataStore } from '../types.js';
import { type DriverFault, type SqlDialect, toDomainError } from '../sql/dialect.js';
import { openSqlMetadataStore, type SqlMetadataStoreOptions } from '../sql/metadata-store.js';
import { GroupCommitSqliteDialect, WalSync } from './group-commit.js';
import { WAL_SIZE_LIMIT } from './wal-size.js';
import type { Database } from '../sql/schema.js';

export const sqliteDialect: SqlDialect = {
  name: 'sqlite',
  flag: (value) => (value ? 1 : 0),
  firstJsonElement: (array) => sql`json_extract(${array}, '$[0]')`,
  jsonElements: (array, alias) => sql`json_each(${array}) AS ${sql.ref(alias)}`,
  position: (haystack, needle) => sql`instr(${haystack}, ${needle})`,
  earlier: (a, b) => sql`min(${a}, ${b})`,
  // Timestamps are text, and so is a bare parameter.
  timestamp: (value) => sql`${value}`,
  rowLocks: false,
  collectorFence: () => undefined,
  fault: (e): DriverFault | undefined => {
    const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
    const detail = String(message);
    switch (code) {
      case 'SQLITE_CONSTRAINT_UNIQUE':
      case 'SQLITE_CONSTRAINT_PRIMARYKEY':
        return { kind: 'unique', detail };
      case 'SQLITE_CONSTRAINT_FOREIGNKEY':
        return { kind: 'foreign_key', detail };
      case 'SQLITE_CONSTRAINT_CHECK':
      case 'SQLITE_CONSTRAINT_NOTNULL':
        return { kind: 'check', detail };
      case 'SQLITE_FULL':
      case 'ENOSPC':
        return { kind: 'full' };
      // SQLITE_BUSY stays an error: busy_timeout has waited already, and SQLite has no deadlock.
      default:
        return undefined;
    }
  },
  // The words of the migrations as released (0001-0008): see migrations.ts.
  ddl: {
    prelude: [],
    serialKey: 'INTEGER PRIMARY KEY AUTOINCREMENT',
    rowKey: 'INTEGER PRIMARY KEY',
    integer: 'INTEGER',
    blob: 'BLOB',
    timestamp: 'TEXT',
    caselessText: 'TEXT',
    caseless: 'COLLATE NOCASE',
    falseByDefault: (column) => `INTEGER NOT NULL DEFAULT 0 CHECK (${column} IN (0, 1))`,
    true: '1',
    isJsonObject: (column) => `json_type(${column}) = 'object'`,
    jsonArrayOf: (expression) => `json_array(${expression})`,
    byteOrdered: () => [],
    strict: ' STRICT',
    strictWithoutRowid: ' STRICT, WITHOUT ROWID',
  },
};

/**
 * Opens (creating it when absent) the SQLite file at `file`, usually `<dataDir>/snapfork.db`,
 * whose commits `wal` makes durable (group-commit.ts; given by tests that count its syncs).
 * Migrations are not run here; see openSqliteMetadataStore.
 */
export function openSqliteDatabase(file: string, wal = new WalSync(`${file}-wal`)): Kysely<Database> {
  let sqlite: BetterSqlite3.Database;
  try {
    sqlite = new BetterSqlite3(file);
    // WAL lets readers proceed during a write; it is a property of the file and can be refused
    // (for example on a network file system), so check what we got.
    const mode: unknown = sqlite.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`SQLite refused WAL mode for ${file} (got ${String(mode)})`);
    // NORMAL leaves out FULL's sync of the WAL inside each commit; GroupCommitSqliteDialect
    // makes it, shared by the commits under way, before any of them is acknowledged: an
    // acknowledged write survives a power loss (group-commit.ts).
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
    sqlite.pragma('foreign_keys = ON');
    // Another process (a backup, the CLI) may hold the write lock briefly: wait, don't fail.
    sqlite.pragma('busy_timeout = 5000');
  } catch (e) {
    throw toDomainError(sqliteDialect, e, `database ${file}`);
  }
  return new Kysely<Database>({ dialect: new GroupCommitSqliteDialect({ database: reusingStatements(sqlite, wal) }, wal) });
}

/** Prepared statements kept for reuse, by SQL text (the most recently used first to go last). */
const STATEMENT_CACHE_SIZE = 512;

/**
 * better-sqlite3 as Kysely's driver sees it, but with prepared statements reused: the driver
 * prepares every query anew, which a profile of a file read put at a tenth of the request's CPU.
 * A statement still being iterated (a streamed query) is busy and cannot run again meanwhile,
 * so that caller gets a fresh one. Statements that write tell `wal` before they run.
 */
function reusingStatements(sqlite: BetterSqlite3.Database, wal: WalSync): SqliteDatabase {
  const statements = new Map<string, BetterSqlite3.Statement>();
  // One facade a statement that writes, made with it: prepare() runs for every query.
  const facades = new WeakMap<BetterSqlite3.Statement, SqliteStatement>();
  const noted = (statement: BetterSqlite3.Statement): SqliteStatement => {
    if (statement.readonly) return statement;
    let facade = facades.get(statement);
    if (!facade) facades.set(statement, (facade = notingWrites(statement, wal)));
    return facade;
  };
  return {
    close: () => sqlite.close(),
    prepare(text) {
      const cached = statements.get(text);
      if (cached?.busy) return noted(sqlite.prepare(text));
      const statement = cached ?? sqlite.prepare(text);
      statements.delete(text);
      statements.set(text, statement);
      if (statements.size > STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value!);
      return noted(statement);
    },
  };
}

/**
 * A statement that writes, as Kysely runs it, noting each run in `wal`. (BEGIN and COMMIT count
 * as read-only in SQLite: the statements in between are the writes.)
 */
function notingWrites(statement: BetterSqlite3.Statement, wal: WalSync): SqliteStatement {
  return {
    reader: statement.reader,
    all(parameters) {
      wal.noteWrite();
      return statement.all(parameters);
    },
    run(parameters) {
      wal.noteWrite();
      return statement.run(parameters);
    },
    iterate(parameters) {
      wal.noteWrite();
      return statement.iterate(parameters);
    },
  };
}

/**
 * Opens `file` (creating it when absent), brings its schema up to date and returns the store.
 * `wal`: see openSqliteDatabase.
 */
export async function openSqliteMetadataStore(file: string, options: SqlMetadataStoreOptions & { wal?: WalSync } = {}): Promise<MetadataStore> {
  return openSqlMetadataStore(openSqliteDatabase(file, options.wal), sqliteDialect, options);
}
