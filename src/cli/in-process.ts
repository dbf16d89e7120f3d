import { loadConfig, type Config, type ConfigOverrides } from '../config.js';
import type { Io } from './command.js';
import { CliError } from './errors.js';

/** `loadConfig` for `serve` and `token create`; a bad environment is a one-line error. */
export function configFrom(io: Io, overrides: ConfigOverrides): Config {
  try {
    return loadConfig(io.env, overrides);
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * The composition root, imported lazily so the HTTP commands never load the server, SQLite and
 * its native modules.
 */
export const loadServer = () => import('../main.js');
