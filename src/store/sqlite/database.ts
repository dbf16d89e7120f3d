/**
 * The SQLite side of the metadata store: opening the database file and translating driver
 * errors. Everything that knows about better-sqlite3 lives here, so a PostgreSQL store can sit
 * beside this one with its own opener and error table.
 */
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { conflict, DomainError, invalid, notFound } from '../../domain/errors.js';
import type { Database } from './schema.js';

/**
 * Opens (creating it when absent) the SQLite file at `file`, usually `<dataDir>/snapfork.db`.
 * Migrations are not run here; see migrations.ts.
 */
export function openSqliteDatabase(file: string): Kysely<Database> {
  let sqlite: BetterSqlite3.Database;
  try {
    sqlite = new BetterSqlite3(file);
    // WAL lets readers proceed during a write; it is a property of the file and can be refused
    // (for example on a network file system), so check what we got.
    const mode: unknown = sqlite.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`SQLite refused WAL mode for ${file} (got ${String(mode)})`);
    // FULL syncs the WAL on every commit: an acknowledged write survives a power loss.
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
    // Another process (a backup, the CLI) may hold the write lock briefly: wait, don't fail.
    sqlite.pragma('busy_timeout = 5000');
  } catch (e) {
    throw toDomainError(e, `database ${file}`);
  }
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
}

/**
 * Translates a SQLite (or file system) error into the DomainError the store contract promises;
 * `subject` names what was being written ("repository acme/data"). Errors that are not the
 * caller's doing (I/O, corruption, busy) are returned unchanged and end up as a 500.
 */
export function toDomainError(e: unknown, subject: string): unknown {
  if (e instanceof DomainError) return e;
  switch ((e as { code?: unknown } | null)?.code) {
    case 'SQLITE_CONSTRAINT_UNIQUE':
    case 'SQLITE_CONSTRAINT_PRIMARYKEY':
      return conflict(`${subject} already exists`);
    case 'SQLITE_CONSTRAINT_FOREIGNKEY':
      return notFound(`${subject} refers to a record that does not exist`);
    case 'SQLITE_CONSTRAINT_CHECK':
    case 'SQLITE_CONSTRAINT_NOTNULL':
      return invalid(`${subject} has a value out of range`);
    case 'SQLITE_FULL':
    case 'ENOSPC':
      return new DomainError('insufficient_storage', `no space left to store ${subject}`);
    default:
      return e;
  }
}
