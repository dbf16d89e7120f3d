import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { formatTable } from '../format.js';
import { ApiClient, repoApiPath } from '../http-client.js';
import { parseRepoPath } from '../reference.js';

interface TagRow {
  name: string;
  commit_id: string;
  reference: string;
  created_at: string;
  updated_at: string;
}

export const tags = defineCommand({
  name: 'tags',
  args: ['<owner/repo>'],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary: 'List the tags of a repository.',
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [repoText], flags) {
    const repo = parseRepoPath(repoText as string);
    const rows = await ApiClient.from(flags, io.env).json<TagRow[]>('GET', `${repoApiPath(repo)}/tags`);
    const table = () =>
      formatTable(
        ['TAG', 'COMMIT', 'UPDATED'],
        rows.map((t) => [t.name, t.commit_id, t.updated_at]),
      );
    output(io, flags.json, rows, table);
  },
});
