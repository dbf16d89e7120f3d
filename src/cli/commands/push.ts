import { archiveOf } from '../archive.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output, progress, type Io } from '../command.js';
import { UsageError } from '../errors.js';
import { formatBytes } from '../format.js';
import { ApiClient, ApiError, archiveApiPath, currentLogin, repoApiPath } from '../http-client.js';
import { formatReference, parseReference, type Reference } from '../reference.js';

const VISIBILITIES = ['public', 'private', 'internal'];

interface PushResult {
  commit_id: string;
  repo_name: string;
  tag_name: string;
  reference: string;
  files: number;
  bytes: number;
  new_bytes: number;
}

/** Creates `owner/repo` when it does not exist: under the caller's account or under the org. */
async function ensureRepository(client: ApiClient, io: Io, ref: Reference, visibility: string, json: boolean) {
  try {
    await client.json('GET', repoApiPath(ref));
    return;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
  }
  const login = await currentLogin(client);
  const path = ref.owner === login ? '/api/v1/user/repos' : `/api/v1/orgs/${encodeURIComponent(ref.owner)}/repos`;
  await client.json('POST', path, { json: { name: ref.repo, visibility } });
  if (!json) io.stderr.write(`created ${visibility} repository ${ref.owner}/${ref.repo}\n`);
}

export const push = defineCommand({
  name: 'push',
  args: ['<dir|file>', '<owner/repo:tag>'],
  flagsUsage: '[--message M] [--visibility public|private|internal] [--json] [--url U] [--token T]',
  summary:
    'Upload a directory, a .tar file or a single file (a VM disk, say) as a tag.\n' +
    'Creates the repository (private by default) when it does not exist.',
  flags: { message: { type: 'string' }, visibility: { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [source, refText], flags) {
    const ref = parseReference(refText as string);
    const visibility = flags.visibility ?? 'private';
    if (!VISIBILITIES.includes(visibility)) {
      throw new UsageError(`bad --visibility "${visibility}": expected ${VISIBILITIES.join(', ')}`);
    }
    const client = ApiClient.from(flags, io.env);
    const archive = await archiveOf(source as string, (message) => io.stderr.write(`snapfork: warning: ${message}\n`));
    await ensureRepository(client, io, ref, visibility, flags.json);
    const meter = progress(io, flags.json, `push ${formatReference(ref)}`, archive.total);
    const result = await client.json<PushResult>('PUT', archiveApiPath(ref), {
      body: meter.track(archive.open()),
      contentType: 'application/x-tar',
      query: { message: flags.message },
    });
    meter.finish();
    output(
      io,
      flags.json,
      result,
      () =>
        `pushed ${formatReference(ref)} (commit ${result.commit_id}): ${result.files} files, ` +
        `${formatBytes(result.bytes)}, ${formatBytes(result.new_bytes)} new`,
    );
  },
});
