/**
 * Delta push and pull under /api/v1/repos/{owner}/{repo} (issue 7): which chunks are missing,
 * chunk upload one at a time or as a pack, chunk download one at a time or as a pack, manifest
 * commit and manifest read.
 * Business rules (the tenant check above all) live in TransferService; this file maps HTTP.
 */
import { Readable } from 'node:stream';
import { Router, type Request } from 'express';
import { MAX_CHUNK_SIZE } from '../../domain/chunker.js';
import { tooLarge } from '../../domain/errors.js';
import type { Services } from '../../domain/services.js';
import { encodeChunkRecords, MAX_PACK_BYTES, MAX_PACK_RECORDS, readChunkRecords } from '../../lib/chunk-pack.js';
import { compressBlock } from '../../lib/zstd.js';
import { principalOf } from '../auth.js';
import { manifestEntryOf, type ManifestEntryJson } from '../../lib/manifest-json.js';
import { manifestJson, pushJson } from './mapping.js';
import { decodedBody, prefersZstd, streamOut } from './streams.js';

/**
 * JSON bodies of a manifest commit may be this large: a commit names every chunk of a snapshot
 * (~1.3 MB of JSON per GiB of content), so 256 MiB covers ~190 GiB per commit. app.ts parses
 * the commit route of a signed-in caller with this limit; every other JSON body keeps
 * MAX_PARSED_BODY (request-limits.ts).
 */
export const MAX_COMMIT_BODY = 256 * 1024 * 1024;

const param = (req: Request, name: string): string => String(req.params[name]);

interface CommitBody {
  tag: string;
  parent?: string | null;
  message?: string;
  /** As a manifest read answers it: `commit_id` is informational, `digest` is checked. */
  manifest: { commit_id?: string; digest?: string; entries: ManifestEntryJson[] };
}

export function transferRoutes(services: Services): Router {
  const { transfers } = services;
  const router = Router();

  router.post('/repos/:owner/:repo/chunks/missing', async (req, res) => {
    const digests = (req.body as { digests: string[] }).digests;
    res.json({ missing: await transfers.missing(principalOf(res), param(req, 'owner'), param(req, 'repo'), digests) });
  });

  router.post('/repos/:owner/:repo/chunks/fetch', async (req, res) => {
    const digests = (req.body as { digests: string[] }).digests;
    const records = await transfers.readChunks(principalOf(res), param(req, 'owner'), param(req, 'repo'), digests);
    res.setHeader('Content-Type', 'application/octet-stream');
    await streamOut([Readable.from(encodeChunkRecords(records))], res);
  });

  router.put('/repos/:owner/:repo/chunks/:digest', async (req, res) => {
    const data = await readChunk(req);
    const put = await transfers.putChunk(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'digest'), data);
    res.status(put.created ? 201 : 200).json(put);
  });

  router.post('/repos/:owner/:repo/chunks', async (req, res) => {
    const records = readChunkRecords(decodedBody(req), {
      maxChunkSize: MAX_CHUNK_SIZE,
      maxRecords: MAX_PACK_RECORDS,
      maxBytes: MAX_PACK_BYTES,
    });
    res.json(await transfers.putPack(principalOf(res), param(req, 'owner'), param(req, 'repo'), records));
  });

  router.get('/repos/:owner/:repo/chunks/:digest', async (req, res) => {
    const data = await transfers.getChunk(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'digest'));
    const zstd = prefersZstd(req, 'application/octet-stream');
    res.setHeader('Content-Type', zstd ? 'application/zstd' : 'application/octet-stream');
    // Content-addressed: the bytes behind a digest never change.
    res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
    res.end(zstd ? compressBlock(data) : data);
  });

  router.post('/repos/:owner/:repo/commits', async (req, res) => {
    const body = req.body as CommitBody;
    const result = await transfers.commitManifest(principalOf(res), param(req, 'owner'), param(req, 'repo'), {
      tag: body.tag,
      parent: body.parent,
      message: body.message,
      entries: body.manifest.entries.map(manifestEntryOf),
      digest: body.manifest.digest,
    });
    res.status(201).json(pushJson(result));
  });

  router.get('/repos/:owner/:repo/commits/:commit_id/manifest', async (req, res) => {
    const { commit, manifest } = await transfers.getManifest(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'commit_id'));
    res.json(manifestJson(commit, manifest));
  });

  return router;
}

/** The decoded body of a single-chunk upload; `too_large` as soon as it passes MAX_CHUNK_SIZE. */
async function readChunk(req: Request): Promise<Buffer> {
  const tooBig = () => tooLarge(`a chunk may hold at most ${MAX_CHUNK_SIZE} bytes`);
  const declared = Number(req.get('content-length'));
  if (req.get('content-encoding') === undefined && declared > MAX_CHUNK_SIZE) throw tooBig();
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of decodedBody(req) as AsyncIterable<Buffer>) {
    size += piece.length;
    if (size > MAX_CHUNK_SIZE) throw tooBig();
    pieces.push(piece);
  }
  return Buffer.concat(pieces, size);
}
