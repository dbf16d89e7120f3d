/**
 * Boot templates: a guest kernel held in its initramfs before any driver has touched a device
 * (scripts/vm/build-guest.sh, `snapfork.hold` on the kernel command line), saved once per
 * machine shape. A later cold boot of that shape resumes the template over its own disks and
 * lets the initramfs go on, instead of booting the kernel again: under TCG the kernel's boot is
 * ~2.5 s of a ~3.5 s boot here; a resumed template is running in ~0.2 s.
 *
 * A template is the held guest's RAM file (sparse) and its device state (QEMU's migration
 * stream without RAM). It holds nothing of the VM it was taken from but the machine's shape
 * (vCPUs, memory, which devices), the guest assets and the runtime: the kernel command line
 * carries no identity, no disk has been read, and the guest agent gives every VM its own
 * identity, entropy and clock once it answers.
 */
import { randomUUID } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LruMap } from '../../lib/lru-map.js';

/** What the initramfs says on the console as it holds (HOLD_MARKER in scripts/vm/build-guest.sh). */
export const HOLD_MARKER = 'snapfork-initramfs: held before the devices';

/** The kernel command line word that makes the initramfs hold. */
export const HOLD_ARGUMENT = 'snapfork.hold';

/** Templates kept at most (each ~70 MiB of the memory tmpfs for a 256 MiB guest), least recently used dropped. */
const MAX_TEMPLATES = 4;

export interface BootTemplate {
  /** The held guest's RAM, a sparse file on the memory tmpfs. */
  readonly memoryFile: string;
  /** Its device state (QEMU's migration stream without RAM). */
  readonly deviceFile: string;
}

export class BootTemplates {
  /** Made templates by shape; beyond MAX_TEMPLATES the least recently used is dropped, its files removed. */
  private readonly made = new LruMap<string, BootTemplate>(MAX_TEMPLATES, { onEvict: (_, template) => void removeFiles(template) });
  /** Shapes whose template a boot is saving now. */
  private readonly saving = new Set<string>();

  constructor(private readonly dir: string) {}

  /**
   * The shape of a machine: a template resumes only into a machine of the same shape, started
   * from the same guest assets (`assets`, their files; a rebuild gets new templates).
   */
  static async shapeOf(machine: { vcpuCount: number; memSizeMib: number; dataDisk?: unknown }, assets: readonly string[]): Promise<string> {
    const files = await Promise.all(assets.map(async (file) => {
      const { ino, size, mtimeMs } = await stat(file);
      return `${ino}:${size}:${mtimeMs}`;
    }));
    return [`${machine.vcpuCount}cpu`, `${machine.memSizeMib}M`, machine.dataDisk ? 'data' : 'nodata', ...files].join(' ');
  }

  /** The template of `shape`, when one is made. */
  get(shape: string): BootTemplate | undefined {
    return this.made.get(shape);
  }

  /**
   * The files to save `shape`'s template into, when none is made or being saved (the caller
   * then owes add() or abandon()); undefined otherwise.
   */
  claim(shape: string): BootTemplate | undefined {
    if (this.made.has(shape) || this.saving.has(shape)) return undefined;
    this.saving.add(shape);
    const id = randomUUID();
    return { memoryFile: join(this.dir, `${id}.ram`), deviceFile: join(this.dir, `${id}.dev`) };
  }

  /** Records a claimed template as saved; the oldest beyond MAX_TEMPLATES is dropped. */
  add(shape: string, template: BootTemplate): void {
    this.saving.delete(shape);
    this.made.set(shape, template);
  }

  /** Gives up a claim whose save failed, removing what it wrote: a later boot may try again. */
  async abandon(shape: string, template: BootTemplate): Promise<void> {
    this.saving.delete(shape);
    await removeFiles(template);
  }

  /** Forgets a template that did not resume, removing its files: the next boot of its shape saves another. */
  async drop(shape: string, template: BootTemplate): Promise<void> {
    if (this.made.peek(shape) === template) this.made.delete(shape);
    await removeFiles(template);
  }
}

/** A VM copying a template's files as they go still reads them whole: removal only unlinks the names. */
async function removeFiles(template: BootTemplate): Promise<void> {
  await Promise.all([rm(template.memoryFile, { force: true }), rm(template.deviceFile, { force: true })]);
}
