/**
 * What differs between the engines the metadata store runs on (SQLite and PostgreSQL), and
 * nothing else: the aggregate modules are plain Kysely and ask a SqlDialect only for these.
 * Implementations live beside their opener (src/store/sqlite/, src/store/postgres/).
 */
import type { RawBuilder } from 'kysely';
import { conflict, DomainError, invalid, notFound } from '../../domain/errors.js';
import type { Flag, Timestamp } from './schema.js';

/**
 * The classes of driver error the store reacts to. `unique`, `foreign_key` and `check` are the
 * caller's doing (constraint violations); `full` is a full disk; `retry` means the engine
 * aborted the transaction to break a deadlock or a serialization cycle, and running it again
 * may succeed.
 */
export type DriverFault =
  | { kind: 'unique' | 'foreign_key' | 'check'; /** Names the constraint or its columns. */ detail: string }
  | { kind: 'full' | 'retry' };

export interface SqlDialect {
  readonly name: 'sqlite' | 'postgres';
  /** A boolean as the engine stores it: 0 or 1 in SQLite, a boolean in PostgreSQL. */
  flag(value: boolean): Flag;
  /** The first element of a JSON array of strings held as text (commits.parent_ids); null when empty. */
  firstJsonElement(array: RawBuilder<string>): RawBuilder<string | null>;
  /**
   * The strings of a JSON array held as text, as a table `alias` with one column `value`, to
   * CROSS JOIN after the table the array comes from (commits.parent_ids in a graph walk).
   */
  jsonElements(array: RawBuilder<string>, alias: string): RawBuilder<unknown>;
  /** Where `needle` first occurs in `haystack`, counting characters from 1; 0 when nowhere (SQLite's instr, PostgreSQL's strpos). */
  position(haystack: RawBuilder<string>, needle: string): RawBuilder<number>;
  /** The earlier of two timestamps: SQLite's two-argument min(), PostgreSQL's LEAST(). */
  earlier(a: RawBuilder<Timestamp>, b: RawBuilder<Timestamp>): RawBuilder<Timestamp>;
  /**
   * A timestamp value in raw SQL, typed as the timestamp columns are: PostgreSQL gives a bare
   * parameter in a select list the type text, which a recursive CTE then refuses to mix with
   * timestamptz.
   */
  timestamp(value: Timestamp): RawBuilder<Timestamp>;
  /**
   * Whether SELECT ... FOR SHARE / FOR UPDATE exist (PostgreSQL). SQLite has no row locks and
   * needs none: one writer at a time holds the whole database.
   */
  readonly rowLocks: boolean;
  /**
   * A statement that holds, until the transaction ends, garbage collection's fence in `mode`:
   * every transaction holds it shared; the sweep holds it exclusive, so that no transaction is
   * between reading that a chunk is stored and committing what refers to it while chunks go.
   * Undefined where every transaction is exclusive already (SQLite: one writer, one connection).
   */
  collectorFence(mode: 'shared' | 'exclusive'): RawBuilder<unknown> | undefined;
  /** What a driver error means to the store; undefined for anything else (I/O, corruption, bugs). */
  fault(error: unknown): DriverFault | undefined;
  /** The column types and clauses the migrations switch on (migrations.ts). */
  readonly ddl: DdlVocabulary;
}

/**
 * The words of the schema that differ. SQLite's are the text of the released migrations, so that
 * a database file made by them and one made today hold the same schema.
 */
export interface DdlVocabulary {
  /** Statements run first by 0001 (PostgreSQL's citext extension). */
  readonly prelude: readonly string[];
  /** An auto-incremented integer primary key. */
  readonly serialKey: string;
  /** An integer primary key whose values are never reused (tag_log). */
  readonly rowKey: string;
  /** 64-bit integers: sizes pass 2^31. */
  readonly integer: string;
  readonly blob: string;
  /** ISO-8601 UTC strings in SQLite; timestamptz in PostgreSQL (read back as ISO strings). */
  readonly timestamp: string;
  /** The type of names compared ignoring case (namespaces, repositories). */
  readonly caselessText: string;
  /** The collation clause that goes with caselessText, in columns and in index keys. */
  readonly caseless: string;
  /** A boolean column's type, default false. `column` names it for SQLite's CHECK. */
  falseByDefault(column: string): string;
  /** The literal true, for partial indexes. */
  readonly true: string;
  /** A CHECK condition that `column` (text) holds a JSON object. */
  isJsonObject(column: string): string;
  /** A JSON array of one string, as text. */
  jsonArrayOf(expression: string): string;
  /**
   * Statements that make the text column `column` of `table` compare by the bytes of its UTF-8,
   * in comparisons, ORDER BY and indexes: none in SQLite, whose default BINARY collation does so;
   * PostgreSQL's text follows the database's locale otherwise.
   */
  byteOrdered(table: string, column: string): readonly string[];
  /** What closes a CREATE TABLE: SQLite's STRICT (wrong types are refused, not stored). */
  readonly strict: string;
  /** As `strict`, for tables keyed by their primary key alone (SQLite's WITHOUT ROWID). */
  readonly strictWithoutRowid: string;
}

/**
 * Translates a driver (or file system) error into the DomainError the store contract promises;
 * `subject` names what was being written ("repository acme/data"). Errors that are not the
 * caller's doing (I/O, corruption, busy, a deadlock retried too often) are returned unchanged
 * and end up as a 500.
 */
export function toDomainError(dialect: SqlDialect, e: unknown, subject: string): unknown {
  if (e instanceof DomainError) return e;
  switch (dialect.fault(e)?.kind) {
    case 'unique':
      return conflict(`${subject} already exists`);
    case 'foreign_key':
      return notFound(`${subject} refers to a record that does not exist`);
    case 'check':
      return invalid(`${subject} has a value out of range`);
    case 'full':
      return new DomainError('insufficient_storage', `no space left to store ${subject}`);
    default:
      return e;
  }
}
