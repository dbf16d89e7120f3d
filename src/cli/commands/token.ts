import { SCOPES, type Scope } from '../../domain/principal.js';
import { defineCommand } from '../command.js';
import { UsageError } from '../errors.js';
import { parseTtl } from '../ttl.js';
import { configFrom, loadServer } from '../in-process.js';

const DEFAULT_SCOPES: readonly Scope[] = ['repo:read', 'repo:write'];
const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);
const DEFAULT_TTL_SECONDS = 24 * 3600;

export const tokenCreate = defineCommand({
  name: 'token create',
  args: [],
  flagsUsage: '--user LOGIN [--org ORG] [--scope S]... [--ttl 1h] [--data-dir D]',
  summary:
    `Sign a token with the server's key (read from the data directory) and print it.\n` +
    `Scopes: ${SCOPES.join(', ')} (default ${DEFAULT_SCOPES.join(', ')}), as repeated --scope flags or ` +
    `space-separated in one. ` +
    'TTL: 30s, 15m, 1h, 7d or seconds (default 24h).',
  flags: {
    user: { type: 'string' },
    org: { type: 'string' },
    scope: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    'data-dir': { type: 'string' },
  },
  async run(io, _positionals, flags) {
    const user = flags.user;
    if (!user) throw new UsageError('token create: --user LOGIN is required');
    // OAuth spells several scopes as one space-separated string: `--scope 'repo:read repo:write'`.
    const asked = flags.scope.flatMap((s) => s.split(/\s+/)).filter((s) => s !== '');
    const bad = asked.find((s) => !isScope(s));
    if (bad !== undefined) throw new UsageError(`bad --scope "${bad}": expected one of ${SCOPES.join(', ')}`);
    const scopes = asked.length > 0 ? [...new Set(asked.filter(isScope))] : DEFAULT_SCOPES;
    const ttlSeconds = flags.ttl === undefined ? DEFAULT_TTL_SECONDS : parseTtl(flags.ttl);
    const config = configFrom(io, { dataDir: flags['data-dir'] });
    const { mintToken } = await loadServer();
    const token = await mintToken(config, { user, org: flags.org, scopes, ttlSeconds });
    io.stdout.write(`${token}\n`);
  },
});
