/**
 * This machine's limits, measured in the same run as the figures they bound: SHA-256 and
 * zstd -3 per core, and sequential write + fsync to the disk the stores are on.
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, timed, type DataSet } from './tools.js';

const MIB = 1024 * 1024;

/** MB/s of one figure each; `zstd <set>` for each data set. */
export async function measureLimits(work: string, sets: DataSet[], bytes: number): Promise<Map<string, number>> {
  const limits = new Map<string, number>();
  const piece = Buffer.alloc(4 * MIB, 0x5a);
  limits.set(
    'SHA-256 (node:crypto, one core)',
    bytes / 1e6 / (await timed(() => {
      const hash = createHash('sha256');
      for (let done = 0; done < bytes; done += piece.length) hash.update(piece);
      hash.digest();
    })),
  );
  for (const set of sets) {
    limits.set(`zstd -3, one core, ${set.name}`, set.bytes / 1e6 / (await timed(() => exec('sh', ['-c', `zstd -q -3 -T1 -c "${set.v1Tar}" > /dev/null`]))));
  }
  const file = join(work, 'fsync-probe');
  limits.set(
    'write + fsync (4 MiB writes)',
    bytes / 1e6 / (await timed(async () => {
      const handle = await open(file, 'w');
      for (let done = 0; done < bytes; done += piece.length) await handle.write(piece);
      await handle.sync();
      await handle.close();
    })),
  );
  await rm(file);
  return limits;
}
