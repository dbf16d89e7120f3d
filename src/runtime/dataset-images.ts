/**
 * Read-only ext4 images of datasets (DatasetImages), which a VM mounts at /data: built once per
 * manifest digest with e2fsprogs' `mke2fs -d` from a staged copy of the tree (Debian's mke2fs
 * reads no tar stream), and kept, content-addressed, so that every VM of every commit of that
 * tree shares one image. The file system's UUID and directory hash seed derive from the digest:
 * a VM resumed from a commit's saved machine may stand on an image built again (on another
 * server), and its kernel, which cached the superblock of the first, verifies every metadata
 * checksum against that UUID. Builds then differ only in inode change times:
 *
 * ```
 * <dataDir>/datasets/
 * ├── <manifest digest>.img   complete images, never written again
 * └── tmp/                    builds under way (staged tree and image); emptied at open
 * ```
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, lutimes, mkdir, mkdtemp, rename, rm, stat, symlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { Manifest, ManifestEntry } from '../domain/model.js';
import type { DatasetImages } from '../domain/ports/vm-images.js';
import type { ImageFile } from '../domain/ports/vm-runtime.js';

const execFileAsync = promisify(execFile);

const BLOCK = 4096;
/** An inode of ext4 takes 256 bytes of its inode table. */
const INODE_BYTES = 256;
/** Room for what mke2fs puts beside the files: superblocks, group descriptors, bitmaps, lost+found. */
const FIXED_OVERHEAD = 16 * 1024 * 1024;

export class Ext4DatasetImages implements DatasetImages {
  private readonly building = new Map<string, Promise<ImageFile>>();

  /** Images under `dir` (layout above), which this server owns alone; what a killed build left in tmp/ is removed. */
  static async open(dir: string): Promise<Ext4DatasetImages> {
    const tmp = join(dir, 'tmp');
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    return new Ext4DatasetImages(dir);
  }

  private constructor(private readonly dir: string) {}

  imageOf(manifest: Manifest, read: (file: ManifestEntry) => AsyncIterable<Uint8Array>): Promise<ImageFile> {
    let image = this.building.get(manifest.digest);
    if (!image) {
      image = this.find(manifest.digest)
        .then((found) => found ?? this.build(manifest, read))
        .finally(() => this.building.delete(manifest.digest));
      this.building.set(manifest.digest, image);
    }
    return image;
  }

  private async find(digest: string): Promise<ImageFile | undefined> {
    const path = join(this.dir, `${digest}.img`);
    const found = await stat(path).catch(() => undefined);
    return found && { path, size: found.size };
  }

  private async build(manifest: Manifest, read: (file: ManifestEntry) => AsyncIterable<Uint8Array>): Promise<ImageFile> {
    const work = await mkdtemp(join(this.dir, 'tmp', 'build-'));
    try {
      const root = join(work, 'root');
      await stage(manifest, root, read);
      const staged = join(work, 'image');
      const inodes = manifest.entries.length + 64;
      const blocks = manifest.entries.reduce((sum, e) => sum + Math.ceil(e.size / BLOCK) + 1, 0);
      // 10% over the data for extent blocks and directories' growth; whole KiB.
      const bytes = Math.ceil((blocks * BLOCK * 1.1 + inodes * INODE_BYTES + FIXED_OVERHEAD) / 1024) * 1024;
      const uuid = datasetUuid(manifest.digest);
      await execFileAsync(
        'mke2fs',
        ['-q', '-F', '-t', 'ext4', '-O', '^has_journal', '-b', String(BLOCK), '-m', '0', '-N', String(inodes), '-L', 'snapfork-data', '-U', uuid, '-E', `hash_seed=${uuid}`, '-d', root, staged, `${bytes / 1024}k`],
        { timeout: 10 * 60_000 },
      );
      const path = join(this.dir, `${manifest.digest}.img`);
      // Same file system: the image appears whole or not at all.
      await rename(staged, path);
      return { path, size: bytes };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}

/** The file system UUID of a dataset's image: the first 128 bits of its manifest digest. */
export function datasetUuid(digest: string): string {
  const hex = digest.slice(0, 32);
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20, 32)].join('-');
}

/** Writes the tree under `root`: entries with their modes and mtimes, directories implied by paths too. */
async function stage(manifest: Manifest, root: string, read: (file: ManifestEntry) => AsyncIterable<Uint8Array>): Promise<void> {
  await mkdir(root);
  // Manifest paths are relative, without `..`, and nothing lies below a file or symlink
  // (checkedManifest): each target stays inside root.
  for (const entry of manifest.entries) {
    const target = join(root, entry.path);
    await mkdir(dirname(target), { recursive: true });
    if (entry.type === 'dir') await mkdir(target, { recursive: true });
    else if (entry.type === 'symlink') await symlink(entry.linkTarget ?? '', target);
    else await pipeline(Readable.from(read(entry)), createWriteStream(target));
  }
  // Modes and mtimes last, directories deepest first: writing into a directory changes its
  // mtime, and a read-only one would refuse the writes.
  const byDepth = [...manifest.entries].sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const entry of byDepth) {
    const target = join(root, entry.path);
    if (entry.type === 'symlink') {
      await lutimes(target, entry.mtime, entry.mtime);
    } else {
      await chmod(target, entry.mode);
      await utimes(target, entry.mtime, entry.mtime);
    }
  }
}
