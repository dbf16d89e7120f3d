import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { UsageError } from '../errors.js';
import { formatTable } from '../format.js';
import { ApiClient, currentLogin } from '../http-client.js';

interface RepoRow {
  id: number;
  name: string;
  full_name: string;
  visibility: string;
  description: string;
  fork: boolean;
  default_tag: string | null;
  archived: boolean;
  created_at: string;
  updated_at: string;
}

const PER_PAGE = 50;

export const repos = defineCommand({
  name: 'repos',
  args: ['[owner]'],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary: "List an owner's repositories (yours by default) that you can see.",
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [ownerArg], flags) {
    if (ownerArg !== undefined && (ownerArg === '' || ownerArg.includes('/'))) {
      throw new UsageError(`bad owner "${ownerArg}": expected a user or organization name`);
    }
    const client = ApiClient.from(flags, io.env);
    const owner = ownerArg ?? (await currentLogin(client));
    const all: RepoRow[] = [];
    for (let page = 1; ; page++) {
      const response = await client.request('GET', `/api/v1/users/${encodeURIComponent(owner)}/repos`, {
        query: { page, per_page: PER_PAGE },
      });
      const rows = await client.readJson<RepoRow[]>(response);
      all.push(...rows);
      const total = Number(response.headers.get('x-total-count'));
      // A short page is the last; so is reaching X-Total-Count when the server sends it.
      if (rows.length < PER_PAGE || (total > 0 && all.length >= total)) break;
    }
    const table = () =>
      formatTable(
        ['NAME', 'VISIBILITY', 'DEFAULT TAG', 'FORK', 'UPDATED', 'DESCRIPTION'],
        all.map((r) => [r.full_name, r.visibility, r.default_tag, r.fork ? 'yes' : 'no', r.updated_at, r.description]),
      );
    output(io, flags.json, all, table);
  },
});
