import { ChunkUploader } from '../chunk-uploader.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output, progress, type Io } from '../command.js';
import { UsageError } from '../errors.js';
import { formatBytes } from '../format.js';
import { ApiClient, ApiError, currentLogin, repoApiPath, tagCommit, transferApiPaths } from '../http-client.js';
import { chunkFiles, scanSource, spanOf } from '../local-tree.js';
import type { ManifestEntryJson } from '../../lib/manifest-json.js';
import { formatReference, parseReference, type Reference } from '../reference.js';

const VISIBILITIES = ['public', 'private', 'internal'];
/** Commits tried, sending the chunks the server names as missing between two. */
const COMMIT_ATTEMPTS = 3;

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
    'Upload a directory, the contents of a .tar archive (read in place, not unpacked) or a\n' +
    'single file (a VM disk, say) as a tag, sending only the chunks the server lacks; run it\n' +
    'again after an interruption to send only the rest. Creates the\n' +
    'repository (private by default) when it does not exist. Fails, changing nothing, when the\n' +
    'tag moved meanwhile (a concurrent push).',
  flags: { message: { type: 'string' }, visibility: { type: 'string' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [source, refText], flags) {
    const ref = parseReference(refText as string);
    const visibility = flags.visibility ?? 'private';
    if (!VISIBILITIES.includes(visibility)) {
      throw new UsageError(`bad --visibility "${visibility}": expected ${VISIBILITIES.join(', ')}`);
    }
    const client = ApiClient.from(flags, io.env);
    const api = transferApiPaths(ref);
    const local = await scanSource(source as string, (message) => io.stderr.write(`snapfork: warning: ${message}\n`));
    await ensureRepository(client, io, ref, visibility, flags.json);
    // Read before hashing: a push that lands meanwhile makes our commit fail instead of vanish.
    const parent = await tagCommit(client, ref);

    // Chunks go to the server as they are cut (ChunkUploader): the two meters run together, and
    // the send meter's total grows as the server answers which chunks it lacks.
    const total = local.reduce((n, e) => n + e.size, 0);
    const hashing = progress(io, flags.json, `hash ${formatReference(ref)}`, total);
    const sending = progress(io, flags.json, `send ${formatReference(ref)}`, 0, hashing);
    const uploader = new ChunkUploader(client, api, sending);
    const files = local.filter((e) => e.type === 'file');
    const cuts = await uploader.upload((sink) => chunkFiles(files.map(spanOf), (n) => hashing.add(n), sink));
    hashing.finish();
    const cutOf = new Map(files.map((e, i) => [e, cuts[i]!]));
    const entries: ManifestEntryJson[] = local.map((e) => {
      const chunks = cutOf.get(e)?.refs ?? [];
      const size = chunks.reduce((n, c) => n + c.size, 0);
      return { path: e.path, type: e.type, mode: e.mode, size, mtime: e.mtime, link_target: e.linkTarget, chunks };
    });

    // A garbage collection may delete chunks the server had between `missing` and the commit:
    // it then answers 422 naming them, and they are sent again.
    let result: PushResult | undefined;
    for (let attempt = 1; !result; attempt++) {
      try {
        result = await client.json<PushResult>('POST', api.commits, {
          json: { tag: ref.tag, parent, ...(flags.message === undefined ? {} : { message: flags.message }), manifest: { entries } },
        });
      } catch (e) {
        const gone = e instanceof ApiError && e.status === 422 ? e.details.missing : undefined;
        const digests = Array.isArray(gone) ? gone.filter((d): d is string => typeof d === 'string') : [];
        if (attempt === COMMIT_ATTEMPTS || (await uploader.resend(digests)) === 0) throw e;
      }
    }
    sending.finish();
    output(
      io,
      flags.json,
      { ...result, bytes_hashed: total, bytes_sent: uploader.sent, bytes_reused: total - uploader.sent },
      () =>
        `pushed ${formatReference(ref)} (commit ${result.commit_id}): ${result.files} files, ` +
        `${formatBytes(result.bytes)}, ${formatBytes(uploader.sent)} sent`,
    );
  },
});
