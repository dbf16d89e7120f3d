import { open, rm, stat } from 'node:fs/promises';
import type { DiskRange, DiskSource, ImageFile, VmSnapshot } from '../../domain/ports/vm-runtime.js';
import { dropStack, LayeredDisk, type DiskStack } from './disk-stack.js';

/** What a snapshot or a restore copies at a time. */
const COPY_PIECE = 4 * 1024 * 1024;

/**
 * A VM frozen by QemuVm.snapshot(): its disk stack (held), a copy of its RAM file and its
 * device state (QEMU's migration stream, RAM left out: x-ignore-shared). Resumed VMs copy the
 * RAM and stand on the stack; release() frees what only the snapshot holds.
 */
export class QemuSnapshot implements VmSnapshot {
  private released: Promise<void> | undefined;

  constructor(
    /** Which runtime made it: only that one can stand on its layers. */
    readonly owner: object,
    readonly format: string,
    readonly vcpuCount: number,
    readonly memSizeMib: number,
    readonly stack: DiskStack,
    readonly disk: LayeredDisk,
    /** The RAM file copy, on the memory directory's tmpfs. */
    readonly memoryFile: string,
    /** The device state (QEMU's migration stream without RAM). */
    readonly deviceFile: string,
    readonly memory: DiskSource,
    readonly deviceState: DiskSource,
    /** The VM's read-only data disk, which VMs resumed from the snapshot attach too. */
    readonly dataDisk: ImageFile | undefined,
  ) {}

  static async of(
    owner: object,
    format: string,
    machine: { vcpuCount: number; memSizeMib: number; dataDisk?: ImageFile },
    stack: DiskStack,
    files: { memory: string; device: string },
    diskSize: number,
  ): Promise<QemuSnapshot> {
    const disk = new LayeredDisk(diskSize, stack);
    const [memory, deviceState] = await Promise.all([fileSource(files.memory), fileSource(files.device)]);
    return new QemuSnapshot(owner, format, machine.vcpuCount, machine.memSizeMib, stack, disk, files.memory, files.device, memory, deviceState, machine.dataDisk);
  }

  changedRanges(): Promise<DiskRange[]> {
    return this.disk.changedRanges();
  }

  release(): Promise<void> {
    return (this.released ??= (async () => {
      await rm(this.memoryFile, { force: true });
      await rm(this.deviceFile, { force: true });
      await dropStack(this.stack);
    })());
  }
}

/** A file read as a DiskSource (each read opens it: reads are few and large). */
export async function fileSource(path: string): Promise<DiskSource> {
  const { size } = await stat(path);
  return {
    size,
    async read(offset, length) {
      const file = await open(path, 'r');
      try {
        const bytes = Buffer.alloc(length);
        const { bytesRead } = await file.read(bytes, 0, length, offset);
        if (bytesRead !== length) throw new Error(`short read of ${path} at ${offset}`);
        return bytes;
      } finally {
        await file.close();
      }
    },
  };
}

/** Writes a source into a new file, leaving holes where it holds zeros (RAM is mostly zeros). */
export async function writeSourceToFile(source: DiskSource, path: string): Promise<void> {
  const file = await open(path, 'wx');
  try {
    await file.truncate(source.size);
    for (let offset = 0; offset < source.size; offset += COPY_PIECE) {
      const piece = await source.read(offset, Math.min(COPY_PIECE, source.size - offset));
      if (!isZero(piece)) await file.write(piece, 0, piece.length, offset);
    }
  } finally {
    await file.close();
  }
}

const ZEROS = Buffer.alloc(COPY_PIECE);

function isZero(bytes: Buffer): boolean {
  return bytes.equals(ZEROS.subarray(0, bytes.length));
}
