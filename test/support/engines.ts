/**
 * The variables that point a server at external engines (PostgreSQL, S3). Tests and benchmarks
 * that start servers of their own name their engines themselves: an environment configured for
 * the engines' suites (as `.ci/run` does) must not move those servers off the embedded stores.
 */
export function withoutEngines(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[0] !== 'SNAPFORK_DATABASE_URL' && !entry[0].startsWith('SNAPFORK_S3_')),
  );
}
