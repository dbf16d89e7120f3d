/**
 * The tree of a commit made from a VM (POST /vm/{id}/commit): the tree the VM booted from, with
 * its root disk as the VM left it and the VM's machine state beside it (MACHINE_STATE_FILES).
 * Only what the VM changed is read and stored: the disk's unchanged chunks are the base's.
 */
import { chunkEditedFile, chunkWhole, type PutChunk } from './edited-file.js';
import { checkedManifest } from './manifest.js';
import { MAX_CHUNK_SIZE } from './chunker.js';
import type { ChunkRef, Manifest, ManifestEntry } from './model.js';
import type { DiskSource, VmSnapshot } from './ports/vm-runtime.js';
import { isMachineState, MACHINE_STATE_DIR, MACHINE_STATE_FILES } from './vm-config.js';
import type { ChunkStore } from '../store/types.js';

const ZEROS = Buffer.alloc(MAX_CHUNK_SIZE);

/** What storing a VM's commit wrote, for the caller's figures. */
export interface CommittedTree {
  manifest: Manifest;
  /** Bytes of the disk the VM wrote (its changed ranges). */
  diskBytesChanged: number;
  /** Chunks new to the store, and their bytes as stored (compressed). */
  chunksWritten: number;
  bytesStored: number;
}

/**
 * Stores the chunks of `snapshot` that the store lacks and answers the commit's tree: `base`
 * with the snapshot's disk at `rootDisk`'s path (replacing any entry there) and the machine
 * state of the snapshot added (any older one replaced). `rootDisk` is the entry the VM's base
 * disk read: its chunks are kept wherever the VM wrote nothing. Chunks are durable before it
 * resolves; on failure none is visible.
 */
export async function commitTree(
  chunks: ChunkStore,
  base: Manifest,
  rootDisk: ManifestEntry,
  snapshot: VmSnapshot,
  mtime: number,
): Promise<CommittedTree> {
  const writer = chunks.writer();
  let chunksWritten = 0;
  let bytesStored = 0;
  // Most of a disk and of a guest's RAM is zeros: each length of zero chunk is hashed once.
  const zeroChunks = new Map<number, ChunkRef>();
  const put: PutChunk = async (data) => {
    const zero = data.equals(ZEROS.subarray(0, data.length));
    const known = zero ? zeroChunks.get(data.length) : undefined;
    if (known) return known;
    const result = await writer.put(data);
    if (result.created) {
      chunksWritten++;
      bytesStored += result.storedSize;
    }
    const ref = { digest: result.digest, size: result.size };
    if (zero) zeroChunks.set(data.length, ref);
    return ref;
  };
  const wholeFile = async (path: string, source: DiskSource): Promise<ManifestEntry> => ({
    path,
    type: 'file',
    mode: 0o600,
    size: source.size,
    mtime,
    linkTarget: null,
    chunks: await chunkWhole(source.size, (offset, length) => source.read(offset, length), put),
  });
  try {
    const changed = await snapshot.changedRanges();
    const disk: ManifestEntry = {
      ...rootDisk,
      size: snapshot.disk.size,
      mtime,
      chunks: await chunkEditedFile(rootDisk.chunks, snapshot.disk.size, changed, (offset, length) => snapshot.disk.read(offset, length), put),
    };
    const machine = Buffer.from(`${JSON.stringify({ format: snapshot.format, vcpu_count: snapshot.vcpuCount, mem_size_mib: snapshot.memSizeMib })}\n`);
    const state = [
      { path: MACHINE_STATE_DIR, type: 'dir' as const, mode: 0o700, size: 0, mtime, linkTarget: null, chunks: [] },
      await wholeFile(MACHINE_STATE_FILES.machine, { size: machine.length, read: (offset, length) => Promise.resolve(machine.subarray(offset, offset + length)) }),
      await wholeFile(MACHINE_STATE_FILES.memory, snapshot.memory),
      await wholeFile(MACHINE_STATE_FILES.deviceState, snapshot.deviceState),
    ];
    await writer.commit();
    const kept = base.entries.filter((e) => e.path !== rootDisk.path && !isMachineState(e.path));
    return {
      manifest: checkedManifest([...kept, disk, ...state]),
      diskBytesChanged: changed.reduce((n, r) => n + r.length, 0),
      chunksWritten,
      bytesStored,
    };
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
