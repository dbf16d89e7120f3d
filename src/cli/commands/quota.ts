import { quotaLimit } from '../args.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { formatBytes } from '../format.js';
import { ApiClient } from '../http-client.js';

interface Limits {
  bytes: number | null;
  repositories: number | null;
  running_vms: number | null;
}

/** GET/PUT /api/v1/namespaces/{owner}/quota's answer (openapi/snapfork.yaml, NamespaceQuota). */
interface NamespaceQuota {
  namespace: string;
  limits: Limits;
  overrides: Limits;
  usage: { bytes: number; repositories: number; running_vms: number };
}

function summary(q: NamespaceQuota): string {
  const line = (what: string, used: string, limit: string | null, own: unknown) =>
    `  ${what.padEnd(13)} ${used} of ${limit ?? 'no limit'}${limit !== null && own === null ? ' (server default)' : ''}`;
  const count = (n: number | null) => (n === null ? null : String(n));
  return [
    `quota of ${q.namespace}:`,
    line('bytes stored', formatBytes(q.usage.bytes), q.limits.bytes === null ? null : formatBytes(q.limits.bytes), q.overrides.bytes),
    line('repositories', String(q.usage.repositories), count(q.limits.repositories), q.overrides.repositories),
    line('running VMs', String(q.usage.running_vms), count(q.limits.running_vms), q.overrides.running_vms),
    '',
  ].join('\n');
}

export const quota = defineCommand({
  name: 'quota',
  args: ['<namespace>'],
  flagsUsage: '[--bytes SIZE|default] [--repositories N|default] [--running-vms N|default] [--json] [--url U] [--token T]',
  summary:
    "Show a namespace's quota and usage (its members, administrators); with limits, set them (admin token).\n" +
    'SIZE is bytes or 500MiB, 2GiB, 1TiB; "default" gives a limit back to the server\'s default (SNAPFORK_QUOTA_*).',
  flags: { bytes: { type: 'string' }, repositories: { type: 'string' }, 'running-vms': { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [namespace], flags) {
    const limits = {
      bytes: quotaLimit('bytes', flags.bytes, true),
      repositories: quotaLimit('repositories', flags.repositories),
      running_vms: quotaLimit('running-vms', flags['running-vms']),
    };
    const changes = Object.fromEntries(Object.entries(limits).filter(([, value]) => value !== undefined));
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace!)}/quota`;
    const client = ApiClient.from(flags, io.env);
    const report = Object.keys(changes).length === 0
      ? await client.json<NamespaceQuota>('GET', path)
      : await client.json<NamespaceQuota>('PUT', path, { json: changes });
    output(io, flags.json, report, () => summary(report));
  },
});
