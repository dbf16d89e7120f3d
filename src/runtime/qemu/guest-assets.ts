/**
 * The base root disk of the guest assets (scripts/vm/build-guest.sh) as the domain imports it:
 * `rootfs.img`, fingerprinted by the SHA-256 that the build recorded in `assets.json`.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { unavailable } from '../../domain/errors.js';
import type { BaseImageSource } from '../../domain/ports/vm-images.js';

/** The build writes assets.json last: without it, or without the digest, the set is incomplete. */
export function guestBaseImage(assetsDir: string): BaseImageSource {
  const rootfs = join(assetsDir, 'rootfs.img');
  const missing = (why: string) => unavailable(`the VM guest assets in ${assetsDir} ${why}: build them with scripts/vm/build-guest.sh (SNAPFORK_VM_ASSETS)`);
  return {
    async fingerprint() {
      let recorded: unknown;
      try {
        recorded = (JSON.parse(await readFile(join(assetsDir, 'assets.json'), 'utf8')) as { files?: Record<string, unknown> }).files?.['rootfs.img'];
      } catch {
        throw missing('have no readable assets.json');
      }
      if (typeof recorded !== 'string' || !/^[0-9a-f]{64}$/.test(recorded)) throw missing('record no SHA-256 of rootfs.img');
      return recorded;
    },
    async rootDisk() {
      const { size } = await stat(rootfs).catch(() => {
        throw missing('hold no rootfs.img');
      });
      return { size, read: () => createReadStream(rootfs, { highWaterMark: 1024 * 1024 }) };
    },
  };
}
