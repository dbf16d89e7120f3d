import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { extractArchive } from '../archive.js';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output, progress } from '../command.js';
import { formatBytes } from '../format.js';
import { ApiClient, archiveApiPath } from '../http-client.js';
import { formatReference, parseReference } from '../reference.js';

export const pull = defineCommand({
  name: 'pull',
  args: ['<owner/repo:tag>', '<dir>'],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary: 'Download a tag and extract it into <dir> (created if missing), keeping modes, mtimes and symlinks.',
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [refText, dirArg], flags) {
    const ref = parseReference(refText as string);
    const dir = resolve(dirArg as string);
    const client = ApiClient.from(flags, io.env);
    const response = await client.request('GET', archiveApiPath(ref), { accept: 'application/x-tar' });
    const length = Number(response.headers.get('content-length'));
    await mkdir(dir, { recursive: true });
    const meter = progress(io, flags.json, `pull ${formatReference(ref)}`, length > 0 ? length : undefined);
    const { files, bytes } = await extractArchive(meter.track(client.stream(response)), dir);
    meter.finish();
    const reference = formatReference(ref);
    output(
      io,
      flags.json,
      { reference, files, bytes, dir },
      () => `pulled ${reference} into ${dir}: ${files} files, ${formatBytes(bytes)}`,
    );
  },
});
