import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { UsageError } from '../errors.js';
import { ApiClient } from '../http-client.js';
import { formatReference, parseReference } from '../reference.js';

interface ForkResult {
  /** Absent when the source tag has no VM to clone. */
  vm_id?: string;
  commit_id: string;
  repo_name: string;
  tag_name: string;
  reference: string;
}

export const fork = defineCommand({
  name: 'fork',
  args: ['<owner/repo:tag>'],
  flagsUsage: '[--name N] [--tag T] [--json] [--url U] [--token T]',
  summary: 'Fork a tag into a new repository of yours, in constant time (no data is copied).',
  flags: { name: { type: 'string' }, tag: { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [refText], flags) {
    const ref = parseReference(refText as string);
    if (flags.name === '' || flags.tag === '') throw new UsageError('fork: --name and --tag must not be empty');
    const client = ApiClient.from(flags, io.env);
    const result = await client.json<ForkResult>('POST', '/api/v1/repositories/fork', {
      json: {
        source_org: ref.owner,
        source_repo: ref.repo,
        source_tag: ref.tag,
        repo_name: flags.name,
        tag_name: flags.tag,
      },
    });
    output(
      io,
      flags.json,
      result,
      () =>
        `forked ${formatReference(ref)} -> ${result.reference} ` +
        `(commit ${result.commit_id}${result.vm_id ? `, vm ${result.vm_id}` : ''})`,
    );
  },
});
