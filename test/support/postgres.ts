/**
 * PostgreSQL for tests: the server named by SNAPFORK_TEST_DATABASE_URL (or SNAPFORK_DATABASE_URL,
 * as `eval "$(scripts/dev/postgres.sh)"` sets), and a database of its own per test file, so that
 * files running in parallel never meet. Tests that need it skip, saying why, when neither is set.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server's URL, or undefined when tests on PostgreSQL cannot run here. */
export const postgresUrl: string | undefined = process.env.SNAPFORK_TEST_DATABASE_URL ?? process.env.SNAPFORK_DATABASE_URL;

export const POSTGRES_SKIP_REASON =
  'SNAPFORK_TEST_DATABASE_URL (or SNAPFORK_DATABASE_URL) is not set; eval "$(scripts/dev/postgres.sh)" to run these';

// Beside the suites' names (which the default reporter does not print for skipped ones), so
// that a run without PostgreSQL says what it left out.
if (postgresUrl === undefined) console.warn(`PostgreSQL tests skipped: ${POSTGRES_SKIP_REASON}`);

/** Runs `work` with a client connected to `url`, then disconnects. */
async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  /** postgres://... of the new database, with the credentials of `serverUrl`. */
  url: string;
  /** Drops the database, closing whatever connections are left. */
  drop(): Promise<void>;
}

/** Creates an empty database snapfork_test_<random> on the server of `serverUrl`. */
export async function createTestDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `snapfork_test_${randomBytes(6).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withClient(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** Empties every table of the database at `url` but Kysely's migration records, restarting ids. */
export async function emptyTables(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const { rows } = await c.query<{ name: string }>(
      "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'kysely_%'",
    );
    if (rows.length > 0) await c.query(`TRUNCATE ${rows.map((r) => r.name).join(', ')} RESTART IDENTITY CASCADE`);
  });
}
