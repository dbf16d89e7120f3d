import { wholeNumber } from '../args.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { runAdminJob } from '../admin-job.js';
import { ApiClient } from '../http-client.js';

/** POST /api/v1/admin/gc's answer (openapi/snapfork.yaml, GcReport). */
interface GcReport {
  dry_run: boolean;
  repositories_purged: number;
  commits: number;
  manifests: number;
  chunks: number;
  bytes: number;
  packs: number;
  uploads_pruned: number;
  writes_abandoned: number;
  repacked_packs: number;
  repacked_bytes: number;
  seconds: number;
}

const MIB = 1024 * 1024;

function summary(r: GcReport): string {
  const verb = r.dry_run ? 'would free' : 'freed';
  return [
    `garbage collection ${verb} ${r.chunks} chunk(s), ${(r.bytes / MIB).toFixed(1)} MiB stored${r.dry_run ? '' : `, ${r.packs} pack(s)`}`,
    `  commits no tag, fork or VM reaches: ${r.commits} (manifests: ${r.manifests})`,
    ...(r.dry_run
      ? ['  (dry run: nothing was deleted, no repository purged)']
      : [
          `  repositories purged: ${r.repositories_purged}; upload records pruned: ${r.uploads_pruned}; unfinished pack writes discarded: ${r.writes_abandoned}`,
          `  packs rewritten without their garbage: ${r.repacked_packs} (${(r.repacked_bytes / MIB).toFixed(1)} MiB freed)`,
        ]),
    `  in ${r.seconds.toFixed(2)} s`,
    '',
  ].join('\n');
}

export const gc = defineCommand({
  name: 'gc',
  args: [],
  flagsUsage: '[--dry-run] [--purge-deleted] [--grace SECONDS] [--json] [--url U] [--token T]',
  summary:
    'Collect garbage: delete the chunks and commits nothing live reaches (admin token).\n' +
    '--dry-run reports what would go; --purge-deleted purges deleted repositories now; --grace overrides the upload grace.',
  flags: { 'dry-run': { type: 'boolean' }, 'purge-deleted': { type: 'boolean' }, grace: { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, _positionals, flags) {
    const grace = wholeNumber('grace', flags.grace, 0, 'a whole number of seconds');
    const report = await runAdminJob<GcReport>(ApiClient.from(flags, io.env), '/api/v1/admin/gc', {
      dry_run: flags['dry-run'],
      purge_deleted: flags['purge-deleted'],
      ...(grace !== undefined && { grace_seconds: grace }),
    });
    output(io, flags.json, report, () => summary(report));
  },
});
