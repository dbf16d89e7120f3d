import { MAX_PACK_RECORDS, recordHeader, RECORD_HEADER_SIZE } from '../../lib/chunk-pack.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output, progress, type Io } from '../command.js';
import { CliError, UsageError } from '../errors.js';
import { formatBytes } from '../format.js';
import { ApiClient, ApiError, currentLogin, repoApiPath, tagCommit, transferApiPaths } from '../http-client.js';
import { chunkFiles, ChunkReader, forEachLimited, scanSource, spanOf, type ChunkPlace } from '../local-tree.js';
import type { ManifestEntryJson } from '../../lib/manifest-json.js';
import { formatReference, parseReference, type Reference } from '../reference.js';

const VISIBILITIES = ['public', 'private', 'internal'];
/** The server's limit per `missing` call. */
const MISSING_BATCH = 10_000;
/**
 * Chunk bytes per pack request: large enough to amortize a round trip, small enough to retry
 * (and well under the server's MAX_PACK_BYTES with the framing and the last chunk added).
 */
const PACK_BYTES = 8 * 1024 * 1024;
/** Packs in flight: enough to hide the round trip and the server's fsync, on a 2-core server. */
const PARALLEL_PACKS = 3;
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

/**
 * Groups chunks into packs of about PACK_BYTES and at most MAX_PACK_RECORDS chunks (many small
 * files), in file order (reads stay sequential).
 */
export function* packsOf(chunks: readonly { digest: string; place: ChunkPlace }[]) {
  let pack: { digest: string; place: ChunkPlace }[] = [];
  let bytes = 0;
  for (const c of chunks) {
    pack.push(c);
    bytes += c.place.size;
    if (bytes >= PACK_BYTES || pack.length === MAX_PACK_RECORDS) {
      yield pack;
      pack = [];
      bytes = 0;
    }
  }
  if (pack.length > 0) yield pack;
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

    const total = local.reduce((n, e) => n + e.size, 0);
    const hashing = progress(io, flags.json, `hash ${formatReference(ref)}`, total);
    const entries: ManifestEntryJson[] = [];
    const places = new Map<string, ChunkPlace>();
    const files = local.filter((e) => e.type === 'file');
    const cuts = await chunkFiles(files.map(spanOf), (n) => hashing.add(n));
    const cutOf = new Map(files.map((e, i) => [e, cuts[i]!]));
    for (const e of local) {
      const cut = cutOf.get(e);
      const chunks = cut?.refs ?? [];
      cut?.refs.forEach((c, i) => places.set(c.digest, cut.places[i]!));
      const size = chunks.reduce((n, c) => n + c.size, 0);
      entries.push({ path: e.path, type: e.type, mode: e.mode, size, mtime: e.mtime, link_target: e.linkTarget, chunks });
    }
    hashing.finish();

    const digests = [...places.keys()];
    const missing: string[] = [];
    for (let i = 0; i < digests.length; i += MISSING_BATCH) {
      const answer = await client.json<{ missing: string[] }>('POST', api.missing, { json: { digests: digests.slice(i, i + MISSING_BATCH) } });
      missing.push(...answer.missing);
    }
    const sending = progress(io, flags.json, `send ${formatReference(ref)}`, missing.reduce((n, d) => n + places.get(d)!.size, 0));
    let sent = 0;
    const send = (digests: readonly string[]) =>
      forEachLimited(packsOf(digests.map((digest) => ({ digest, place: places.get(digest)! }))), PARALLEL_PACKS, async (pack) => {
        const reader = new ChunkReader();
        const body = Buffer.allocUnsafe(pack.reduce((n, c) => n + RECORD_HEADER_SIZE + c.place.size, 0));
        let at = 0;
        try {
          for (const { digest, place } of pack) {
            const data = await reader.read(place, digest);
            if (!data) throw new CliError(`${place.file} changed while it was pushed; push again`);
            at += recordHeader(digest, data.length).copy(body, at);
            at += data.copy(body, at);
          }
        } finally {
          await reader.close();
        }
        await client.json('POST', api.pack, { body, contentType: 'application/octet-stream' });
        const bytes = body.length - pack.length * RECORD_HEADER_SIZE;
        sent += bytes;
        sending.add(bytes);
      });
    await send(missing);

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
        const resend = Array.isArray(gone) ? gone.filter((d): d is string => typeof d === 'string' && places.has(d)) : [];
        if (resend.length === 0 || attempt === COMMIT_ATTEMPTS) throw e;
        await send(resend);
      }
    }
    sending.finish();
    output(
      io,
      flags.json,
      { ...result, bytes_hashed: total, bytes_sent: sent, bytes_reused: total - sent },
      () =>
        `pushed ${formatReference(ref)} (commit ${result.commit_id}): ${result.files} files, ` +
        `${formatBytes(result.bytes)}, ${formatBytes(sent)} sent`,
    );
  },
});
