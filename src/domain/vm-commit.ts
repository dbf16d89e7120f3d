/**
 * The tree of a commit made from a VM (POST /vm/{id}/commit): the tree the VM booted from, with
 * its root disk as the VM left it and the VM's machine state beside it (MACHINE_STATE_FILES).
 * Only what the VM changed is read and stored: the disk's unchanged chunks are the base's.
 */
import { chunkEditedFile } from './edited-file.js';
import { checkedManifest } from './manifest.js';
import type { ChunkRef, Manifest, ManifestEntry } from './model.js';
import type { DiskRange, StateFile, VmSnapshot } from './ports/vm-runtime.js';
import { PutPipeline } from './put-pipeline.js';
import { SegmentChunker } from './segment-chunker.js';
import { isMachineState, MACHINE_STATE_DIR, MACHINE_STATE_FILES } from './vm-config.js';
import type { EncodedChunk } from '../lib/chunk-codec.js';
import type { ChunkStore } from '../store/types.js';

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
): Promise<Manifest> {
  const writer = chunks.writer();
  const puts = new PutPipeline(writer);
  const store = (refs: ChunkRef[], chunk: Buffer | EncodedChunk) => puts.append(refs, chunk);
  const diskEntry = async (changed: DiskRange[]): Promise<ManifestEntry> => {
    const read = (offset: number, length: number) => snapshot.disk.read(offset, length);
    return { ...rootDisk, size: snapshot.disk.size, mtime, chunks: await chunkEditedFile(rootDisk.chunks, snapshot.disk.size, changed, read, store) };
  };
  const stateEntries = async (): Promise<ManifestEntry[]> => {
    const chunker = new SegmentChunker(chunks.codec, store, () => puts.storingNew);
    const machine = Buffer.from(`${JSON.stringify({ format: snapshot.format, vcpu_count: snapshot.vcpuCount, mem_size_mib: snapshot.memSizeMib })}\n`);
    const files: [string, Pick<StateFile, 'size' | 'readInto'>][] = [
      [MACHINE_STATE_FILES.machine, { size: machine.length, readInto: async (into, offset) => void machine.copy(into, 0, offset, offset + into.length) }],
      [MACHINE_STATE_FILES.memory, snapshot.memory],
      [MACHINE_STATE_FILES.deviceState, snapshot.deviceState],
    ];
    const entries: ManifestEntry[] = [{ path: MACHINE_STATE_DIR, type: 'dir', mode: 0o700, size: 0, mtime, linkTarget: null, chunks: [] }];
    for (const [path, file] of files) {
      const entry: ManifestEntry = { path, type: 'file', mode: 0o600, size: file.size, mtime, linkTarget: null, chunks: [] };
      await chunker.chunkFileAt(entry.chunks, file.size, (into, offset) => file.readInto(into, offset));
      entries.push(entry);
    }
    await chunker.flush();
    return entries;
  };
  try {
    const changed = await snapshot.changedRanges();
    // The disk's changed ranges are cut on this thread while the machine state is cut on the
    // codec's threads. Chunks of zeros (most of a guest's RAM) are named by their length, not
    // hashed (ZeroDigests), and the writer looks each digest up once.
    const [disk, state] = await settledAll([diskEntry(changed), stateEntries()]);
    await puts.drain();
    await writer.commit();
    const kept = base.entries.filter((e) => e.path !== rootDisk.path && !isMachineState(e.path));
    return checkedManifest([...kept, disk, ...state]);
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

/** Promise.all, but settling only once every promise has: nothing of a failed commit runs on after it. */
async function settledAll<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure) throw failure.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
