/**
 * What a VM's disk stands on, below its own writable overlay: frozen qcow2 layers (what it and
 * its ancestors wrote up to each snapshot), newest first, over the export of its base disk.
 * A live branch stands on its parent's layers instead of copying them, so layers and exports
 * are shared, each freed by the last VM or snapshot that lets go of it.
 */
import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { DiskRange, DiskSource } from '../../domain/ports/vm-runtime.js';

const execFileAsync = promisify(execFile);

/** Something several VMs and snapshots stand on, freed when the last holder drops it. */
export class Shared {
  private holders = 1;
  private freed: Promise<void> | undefined;

  /** `free` runs once, when the last holder drops; the creator holds it once. */
  constructor(private readonly free: () => Promise<void>) {}

  hold(): void {
    if (this.holders === 0) throw new Error('a freed disk layer was held again');
    this.holders++;
  }

  drop(): Promise<void> {
    if (this.holders === 0) return this.freed ?? Promise.resolve();
    if (--this.holders > 0) return Promise.resolve();
    return (this.freed = this.free());
  }
}

/** A base disk served to QEMU (over NBD), shared by the VMs of that disk. */
export interface DiskExport {
  readonly shared: Shared;
  /** What an overlay names as its raw backing file. */
  readonly filename: string;
  readonly source: DiskSource;
}

/** A frozen qcow2 layer: read-only from its freezing on. */
export interface Layer {
  readonly shared: Shared;
  readonly path: string;
}

export interface DiskStack {
  readonly base: DiskExport;
  /** Newest first: layers[0] is the backing file of the overlay above the stack. */
  readonly layers: readonly Layer[];
}

/** Takes a hold on every part of the stack for a new holder (a VM or a snapshot). */
export function holdStack(stack: DiskStack): DiskStack {
  stack.base.shared.hold();
  for (const layer of stack.layers) layer.shared.hold();
  return stack;
}

/** Drops the holds holdStack took, top first (a layer is freed before what it stands on). */
export async function dropStack(stack: DiskStack): Promise<void> {
  for (const layer of stack.layers) await layer.shared.drop();
  await stack.base.shared.drop();
}

/**
 * Creates an empty qcow2 overlay of `size` bytes over the top of `stack`, without opening the
 * stack (`-u`): what it stands on is open in running QEMUs already, and is trusted.
 */
export async function createOverlay(path: string, stack: DiskStack, size: number): Promise<void> {
  const top = stack.layers[0];
  const [backing, format] = top ? [top.path, 'qcow2'] : [stack.base.filename, 'raw'];
  await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-F', format, '-b', backing, path, String(size)], { timeout: 30_000 });
}

/** One run of `qemu-img map --output=json`: where a range of the disk comes from. */
interface MapEntry {
  start: number;
  length: number;
  /** 0 for the image mapped, 1 for its backing file, and so on. */
  depth: number;
  zero: boolean;
  data: boolean;
  /** Where the data lies in the file at `depth`, when it lies in one. */
  offset?: number;
}

/**
 * The disk a frozen stack holds, read without QEMU: ranges the layers hold are read from the
 * layer files themselves (qcow2 data clusters are stored plain), the rest from the base disk.
 */
export class LayeredDisk implements DiskSource {
  /** Sorted, contiguous from 0 to size; read on first use (a branch never needs it). */
  private mapped: Promise<readonly MapEntry[]> | undefined;

  /** The disk of `stack`, `size` bytes (its top layer's). The stack must have a layer. */
  constructor(
    readonly size: number,
    private readonly stack: DiskStack,
  ) {
    if (!stack.layers[0]) throw new Error('a layered disk needs a frozen layer');
  }

  /** The ranges the layers hold (what VMs wrote since the base disk), merged. */
  async changedRanges(): Promise<DiskRange[]> {
    const ranges: DiskRange[] = [];
    for (const entry of await this.map()) {
      if (entry.depth >= this.stack.layers.length) continue;
      const previous = ranges[ranges.length - 1];
      if (previous && previous.offset + previous.length === entry.start) previous.length += entry.length;
      else ranges.push({ offset: entry.start, length: entry.length });
    }
    return ranges;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`range ${offset}+${length} is outside a disk of ${this.size} bytes`);
    }
    const out = Buffer.alloc(length);
    const map = await this.map();
    for (let index = entryAt(map, offset); index < map.length; index++) {
      const entry = map[index]!;
      const from = Math.max(offset, entry.start);
      const to = Math.min(offset + length, entry.start + entry.length);
      if (from >= to) break;
      await this.readEntry(entry, from, out.subarray(from - offset, to - offset));
    }
    return out;
  }

  private async readEntry(entry: MapEntry, from: number, into: Buffer): Promise<void> {
    const { layers, base } = this.stack;
    if (entry.depth >= layers.length) {
      // The base disk, or past its end when the overlays are larger (zeros, as Buffer.alloc gave).
      const readable = Math.max(0, Math.min(into.length, base.source.size - from));
      if (readable > 0) (await base.source.read(from, readable)).copy(into);
      return;
    }
    if (entry.zero || !entry.data || entry.offset === undefined) return;
    const file = await open(layers[entry.depth]!.path, 'r');
    try {
      const { bytesRead } = await file.read(into, 0, into.length, entry.offset + (from - entry.start));
      if (bytesRead !== into.length) throw new Error(`short read of disk layer ${layers[entry.depth]!.path}`);
    } finally {
      await file.close();
    }
  }

  /** Maps the stack's top layer (its whole chain) with qemu-img. */
  private map(): Promise<readonly MapEntry[]> {
    return (this.mapped ??= (async () => {
      // -U: running QEMUs hold the chain; the layers mapped are frozen, so sharing is safe.
      const { stdout } = await execFileAsync('qemu-img', ['map', '-U', '--output=json', this.stack.layers[0]!.path], {
        timeout: 60_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return JSON.parse(stdout) as MapEntry[];
    })());
  }
}

/** The index of the map entry holding byte `position`. */
function entryAt(map: readonly MapEntry[], position: number): number {
  let low = 0;
  let high = map.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (map[middle]!.start <= position) low = middle;
    else high = middle - 1;
  }
  return low;
}
