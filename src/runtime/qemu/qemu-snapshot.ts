import { execFile } from 'node:child_process';
import { copyFile, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { DiskRange, DiskSource, ImageFile, StateFile, VmSnapshot } from '../../domain/ports/vm-runtime.js';
import { createOverlay, dropStack, LayeredDisk, type DiskStack } from './disk-stack.js';

const execFileAsync = promisify(execFile);

/** What a snapshot or a restore copies at a time. */
const COPY_PIECE = 4 * 1024 * 1024;

/**
 * A VM frozen by QemuVm.snapshot(): its disk stack (held), a copy of its RAM file and its
 * device state (QEMU's migration stream, RAM left out: x-ignore-shared). Resumed VMs copy the
 * RAM (the last one announced takes the file itself) and stand on the stack, each on an
 * overlay copied from one made with the snapshot; release() frees what only the snapshot holds.
 */
export class QemuSnapshot implements VmSnapshot {
  private released: Promise<void> | undefined;
  /** Resumes still to come of those announced (see memoryInto). */
  private resumesLeft: number;
  /** RAM copies under way: the file is handed over only once they are done. */
  private readonly copies: Promise<void>[] = [];
  private memoryHandedOver = false;

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
    readonly memory: FileSource,
    readonly deviceState: FileSource,
    /** The VM's read-only data disk, which VMs resumed from the snapshot attach too. */
    readonly dataDisk: ImageFile | undefined,
    /** An empty overlay over the stack, made with the snapshot when resumes were announced. */
    private readonly overlayTemplate: string | undefined,
    resumes: number,
  ) {
    this.resumesLeft = resumes;
  }

  static async of(
    owner: object,
    format: string,
    machine: { vcpuCount: number; memSizeMib: number; dataDisk?: ImageFile },
    stack: DiskStack,
    files: { memory: string; device: string; overlay?: string },
    diskSize: number,
    resumes: number,
  ): Promise<QemuSnapshot> {
    const disk = new LayeredDisk(diskSize, stack);
    const [memory, deviceState] = await Promise.all([FileSource.of(files.memory), FileSource.of(files.device)]);
    return new QemuSnapshot(owner, format, machine.vcpuCount, machine.memSizeMib, stack, disk, files.memory, files.device, memory, deviceState, machine.dataDisk, files.overlay, resumes);
  }

  /**
   * Puts the snapshot's RAM into the new file `path`: a sparse copy, or for the last resume
   * announced the file itself (renamed on the same tmpfs, once the other copies are done), which
   * spares the branch a copy of the guest's RAM.
   */
  async memoryInto(path: string): Promise<void> {
    if (this.memoryHandedOver) throw new Error('the snapshot handed its memory to the last VM announced');
    if (--this.resumesLeft === 0) {
      this.memoryHandedOver = true;
      await Promise.allSettled(this.copies);
      // The file becomes a running VM's RAM: the snapshot must not read it any more.
      await this.memory.close();
      await rename(this.memoryFile, path);
      return;
    }
    const copy = copySparse(this.memoryFile, path);
    this.copies.push(copy.catch(() => undefined));
    await copy;
  }

  /** Makes the new file `path` an empty overlay of `size` bytes over the snapshot's disk. */
  async overlayInto(path: string, size: number): Promise<void> {
    // The template was made for the snapshot's own size; a resumed VM has that size too.
    if (this.overlayTemplate && size === this.disk.size) await copyFile(this.overlayTemplate, path);
    else await createOverlay(path, this.stack, size);
  }

  changedRanges(): Promise<DiskRange[]> {
    return this.disk.changedRanges();
  }

  release(): Promise<void> {
    return (this.released ??= (async () => {
      await Promise.allSettled(this.copies);
      await Promise.all([this.memory.close(), this.deviceState.close()]);
      await rm(this.memoryFile, { force: true });
      await rm(this.deviceFile, { force: true });
      if (this.overlayTemplate) await rm(this.overlayTemplate, { force: true });
      await dropStack(this.stack);
    })());
  }
}

/**
 * A file read through one descriptor, opened at the first read and kept until close(): a commit
 * reads a guest's RAM in a hundred pieces, and an open and a close cost ~1 ms under this host's
 * nested virtualisation. A read after close() opens the file again.
 */
export class FileSource implements StateFile {
  private file: Promise<FileHandle> | undefined;

  private constructor(
    private readonly path: string,
    readonly size: number,
  ) {}

  static async of(path: string): Promise<FileSource> {
    return new FileSource(path, (await stat(path)).size);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    // Not zeroed first: every byte is read, or the read fails.
    const bytes = Buffer.allocUnsafeSlow(length);
    await this.readInto(bytes, offset);
    return bytes;
  }

  async readInto(into: Buffer, offset: number): Promise<void> {
    const file = await (this.file ??= open(this.path, 'r'));
    const { bytesRead } = await file.read(into, 0, into.length, offset);
    if (bytesRead !== into.length) throw new Error(`short read of ${this.path} at ${offset}`);
  }

  /** Closes the descriptor, if open. Reads still in flight may fail. */
  async close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    await (await file?.catch(() => undefined))?.close();
  }
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

/** Copies a file, its runs of zeros left as holes (an overlay holds what a VM wrote; RAM is mostly zeros). */
export async function copySparse(from: string, to: string): Promise<void> {
  await execFileAsync('cp', ['--sparse=always', from, to], { timeout: 600_000 });
}
