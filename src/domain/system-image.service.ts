import { Chunker } from './chunker.js';
import { conflict, isDomainError, notFound } from './errors.js';
import { checkedManifest } from './manifest.js';
import type { ChunkRef, Commit, Manifest, ManifestEntry, Namespace, Repository } from './model.js';
import type { BaseImageSource, SourceFile } from './ports/vm-images.js';
import type { UserPrincipal } from './principal.js';
import { PutPipeline } from './put-pipeline.js';
import type { RepositoryService } from './repository.service.js';
import type { SnapshotService } from './snapshot.service.js';
import { DEFAULT_KERNEL, ROOT_DISK_FILE, VM_CONFIG_FILE } from './vm-config.js';
import type { ChunkStore, ChunkWriter, MetadataStore } from '../store/types.js';

/**
 * The system repository `snapfork/images` (an organization without members; the repository is
 * `internal`, so every signed-in user reads it): each tag is a base image that
 * `POST /vm/new_root` boots by its `image_name`. Only `default` exists, imported from the
 * guest assets.
 */
export const SYSTEM_NAMESPACE = 'snapfork';
export const SYSTEM_IMAGES_REPOSITORY = 'images';
export const DEFAULT_IMAGE = 'default';

export interface SystemImage {
  commit: Commit;
  manifest: Manifest;
}

/** The base image's snapfork-vm.json: the default size, booted with the assets' kernel. */
const BASE_IMAGE_CONFIG = Buffer.from(`${JSON.stringify({ kernel: DEFAULT_KERNEL })}\n`);

/**
 * Keeps the guest assets' base root disk in the store as `snapfork/images:default`, imported
 * through a push like any other (chunked, deduplicated, recorded for the repository), on first
 * use rather than at start: chunking the 512 MiB image costs seconds of CPU, which a server that
 * boots no base image never pays.
 */
export class SystemImageService {
  /** The image as of the fingerprint the last import saw; checked again on each use. */
  private current: { fingerprint: string; image: SystemImage } | undefined;
  private importing: Promise<SystemImage> | undefined;

  constructor(
    private readonly store: MetadataStore,
    private readonly chunks: ChunkStore,
    private readonly repositories: RepositoryService,
    private readonly snapshots: SnapshotService,
    private readonly source: BaseImageSource,
  ) {}

  /**
   * The base image named `name` (a tag of snapfork/images), imported first when the guest
   * assets changed since. `not_found` "image NAME not found" for another name than `default`.
   */
  async image(name: string): Promise<SystemImage> {
    if (name !== DEFAULT_IMAGE) throw notFound(`image ${name} not found`);
    return this.importBaseImage();
  }

  /**
   * Makes `snapfork/images:default` hold the guest assets' root disk. Idempotent: assets whose
   * fingerprint the tag's commit records are not read again, and a root disk whose tree equals
   * the tag's makes no commit; rebuilt assets move the tag to a new commit, whose unchanged
   * chunks are stored once. Concurrent calls share one import.
   */
  importBaseImage(): Promise<SystemImage> {
    return (this.importing ??= this.importOnce().finally(() => (this.importing = undefined)));
  }

  private async importOnce(): Promise<SystemImage> {
    try {
      return await this.importAttempt();
    } catch (e) {
      // Another server of the same database imported at the same moment (its organization,
      // repository or tag move won): what it made now exists, and a second look finds it.
      if (isDomainError(e) && e.kind === 'conflict') return this.importAttempt();
      throw e;
    }
  }

  private async importAttempt(): Promise<SystemImage> {
    const fingerprint = await this.source.fingerprint();
    if (this.current?.fingerprint === fingerprint) return this.current.image;
    const message = `base image of the guest assets (rootfs.img sha256 ${fingerprint})`;
    const system = systemPrincipal(await this.systemOrganization());
    const repository = await this.imagesRepository(system);
    const tag = await this.store.getTag(repository.id, DEFAULT_IMAGE);
    let commit = tag && (await this.store.getCommit(tag.commitId));
    if (!commit || commit.message !== message) {
      const writer = this.chunks.writer();
      try {
        const entries = [await fileEntry(ROOT_DISK_FILE, await this.source.rootDisk(), writer), await fileEntry(VM_CONFIG_FILE, bufferFile(BASE_IMAGE_CONFIG), writer)];
        const manifest = checkedManifest(entries);
        if (commit?.manifestDigest !== manifest.digest) {
          await writer.commit();
          const pushed = await this.snapshots.commitSnapshot(system, repository, DEFAULT_IMAGE, manifest, { message, expectedParent: tag?.commitId ?? null });
          commit = pushed.commit;
        }
      } finally {
        await writer.abort(); // after commit() it does nothing
      }
    }
    const image = { commit, manifest: await this.snapshots.manifestOf(commit) };
    this.current = { fingerprint, image };
    return image;
  }

  /** The organization `snapfork`, created without members on first use. */
  private async systemOrganization(): Promise<Namespace> {
    return this.store.transaction(async (tx) => {
      const found = await tx.getNamespace(SYSTEM_NAMESPACE);
      if (found?.kind === 'user') {
        throw conflict(`the namespace ${SYSTEM_NAMESPACE} is a user's: the system images need it as an organization`);
      }
      return found ?? tx.createOrg(SYSTEM_NAMESPACE);
    });
  }

  private async imagesRepository(system: UserPrincipal): Promise<Repository> {
    const found = await this.store.getRepository(SYSTEM_NAMESPACE, SYSTEM_IMAGES_REPOSITORY);
    return found ?? this.repositories.create(system, SYSTEM_NAMESPACE, { name: SYSTEM_IMAGES_REPOSITORY, visibility: 'internal', description: 'VM base images (POST /api/v1/vm/new_root)' });
  }
}

/**
 * The server itself, acting as the organization's owner (a principal whose user id is the
 * organization's own), with the scopes a push needs. It never leaves this module.
 */
function systemPrincipal(org: Namespace): UserPrincipal {
  return { kind: 'user', userId: org.id, login: SYSTEM_NAMESPACE, scopes: new Set(['repo:read', 'repo:write']) };
}

function bufferFile(data: Buffer): SourceFile {
  return {
    size: data.length,
    async *read() {
      yield data;
    },
  };
}

/** Chunks `file` into `writer` as the manifest entry `path` (mode 0644, mtime 0: the tree depends on the bytes only). */
async function fileEntry(path: string, file: SourceFile, writer: ChunkWriter): Promise<ManifestEntry> {
  const chunker = new Chunker();
  const chunks: ChunkRef[] = [];
  const puts = new PutPipeline(writer);
  const store = async (pieces: Buffer[]) => {
    for (const piece of pieces) await puts.append(chunks, piece);
  };
  for await (const data of file.read()) await store(chunker.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
  await store(chunker.finish());
  await puts.drain();
  const size = chunks.reduce((sum, c) => sum + c.size, 0);
  if (size !== file.size) throw new Error(`${path} changed while it was imported: ${size} bytes read, ${file.size} expected`);
  return { path, type: 'file', mode: 0o644, size, mtime: 0, linkTarget: null, chunks };
}
