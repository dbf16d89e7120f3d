/**
 * Where the disks of VMs that do not boot a commit's own root disk come from (issue 12): the
 * base image of the server's guest assets, which the domain imports into the system repository,
 * and the read-only images of datasets, built on this host. Nothing here knows the paths.
 */
import type { Manifest, ManifestEntry } from '../model.js';
import type { ImageFile } from './vm-runtime.js';

/** A file of this host to import into a commit, read from its start. */
export interface SourceFile {
  readonly size: number;
  /** The file's bytes, in order; exactly `size` of them. */
  read(): AsyncIterable<Uint8Array>;
}

/** The base root disk the server's guest assets hold (scripts/vm/build-guest.sh). */
export interface BaseImageSource {
  /**
   * Identifies the root disk's content without reading it (the digest the assets recorded when
   * they were built): equal fingerprints promise equal bytes, so an import can be skipped.
   * Rejects when the assets are missing or incomplete.
   */
  fingerprint(): Promise<string>;
  /** The root disk, a raw ext4 image. Rejects when it is missing. */
  rootDisk(): Promise<SourceFile>;
}

/** Read-only ext4 images of datasets, which a VM mounts at /data. */
export interface DatasetImages {
  /**
   * An ext4 image holding `manifest`'s tree (paths, modes, mtimes, symlinks), each file's bytes
   * read through `read`. Built once per manifest digest and kept: later calls, and calls while
   * it is built, get the same image. The file is never written again once returned. Rejects
   * (and keeps nothing) when the build fails.
   */
  imageOf(manifest: Manifest, read: (file: ManifestEntry) => AsyncIterable<Uint8Array>): Promise<ImageFile>;
}
