import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { runAdminJob } from '../admin-job.js';
import { ApiClient } from '../http-client.js';

/** POST /api/v1/admin/fsck's answer (openapi/snapfork.yaml, FsckReport). */
interface FsckReport {
  ok: boolean;
  read_data: 'none' | 'all' | 'subset';
  read_data_subset: string | null;
  commits_checked: number;
  manifests_checked: number;
  references_checked: number;
  chunks_checked: number;
  missing: Problem[];
  missing_total: number;
  corrupt: Problem[];
  corrupt_total: number;
  seconds: number;
}

interface Problem {
  kind: 'manifest' | 'parent' | 'chunk' | 'size_mismatch';
  commit?: string;
  parent?: string;
  manifest?: string;
  digest?: string;
  path?: string;
  pack?: string;
  reason?: string;
  expected_size?: number;
  actual_size?: number;
}

/** Exit status when fsck found something missing or corrupt (an error to run it is 1 too). */
const PROBLEMS_FOUND = 1;

function describeProblem(p: Problem): string {
  switch (p.kind) {
    case 'manifest':
      return `manifest ${p.manifest} of commit ${p.commit}`;
    case 'parent':
      return `parent ${p.parent} of commit ${p.commit}`;
    case 'size_mismatch':
      return `chunk ${p.digest} of "${p.path}" (manifest ${p.manifest}): listed as ${p.expected_size} bytes, stored as ${p.actual_size}`;
    case 'chunk':
      return p.path !== undefined
        ? `chunk ${p.digest} of "${p.path}" (manifest ${p.manifest})`
        : `chunk ${p.digest}${p.pack ? ` in pack ${p.pack}` : ''}: ${p.reason}`;
  }
}

function problemLines(title: string, listed: Problem[], total: number): string[] {
  if (total === 0) return [];
  const more = total - listed.length;
  return [`${title} (${total}):`, ...listed.map((p) => `  ${describeProblem(p)}`), ...(more > 0 ? [`  ... and ${more} more`] : [])];
}

function summary(r: FsckReport): string {
  const read =
    r.read_data === 'none'
      ? 'no chunk data read (--read-data reads it)'
      : `${r.chunks_checked} chunks read and hashed${r.read_data === 'subset' ? ` (subset ${r.read_data_subset})` : ''}`;
  return [
    `checked ${r.commits_checked} commits, ${r.manifests_checked} manifests, ${r.references_checked} chunk references; ${read}; ${r.seconds.toFixed(1)} s`,
    ...problemLines('missing', r.missing, r.missing_total),
    ...problemLines('corrupt', r.corrupt, r.corrupt_total),
    r.ok ? 'no problems found' : `${r.missing_total + r.corrupt_total} problems found`,
  ].join('\n');
}

export const fsck = defineCommand({
  name: 'fsck',
  args: [],
  flagsUsage: '[--read-data] [--read-data-subset n/m|p%] [--json] [--url U] [--token T]',
  summary:
    "Check the store's integrity (an admin token): every commit's manifest and parents, every chunk a manifest lists,\n" +
    'and with --read-data every stored chunk read back against its digest (--read-data-subset: a part of them,\n' +
    'e.g. 1/10 or 5%). Exits 1 when something is missing or corrupt.',
  flags: { 'read-data': { type: 'boolean' }, 'read-data-subset': { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, _positionals, flags) {
    const client = ApiClient.from(flags, io.env);
    const report = await runAdminJob<FsckReport>(client, '/api/v1/admin/fsck', {
      ...(flags['read-data'] && { read_data: true }),
      ...(flags['read-data-subset'] !== undefined && { read_data_subset: flags['read-data-subset'] }),
    });
    output(io, flags.json, report, () => summary(report));
    return report.ok ? 0 : PROBLEMS_FOUND;
  },
});
