import type { DiskSource } from '../../domain/ports/vm-runtime.js';

/** A VM's base disk made openable by QEMU, as the raw backing file of the VM's qcow2 overlay. */
export interface DiskBacking {
  /** What the overlay names as its backing: a path, or `nbd+unix:///?socket=<path>`. */
  readonly filename: string;
  /** Stops serving the disk (after the VM's process has exited). Idempotent. */
  close(): Promise<void>;
}

/**
 * Makes `disk` readable by QEMU for one VM. `socketPath` is a free path in the VM's work
 * directory where a server may listen; the NBD server of src/runtime/nbd/ serves the disk there
 * (`nbd+unix:///?socket=<socketPath>`), read lazily from the chunk store.
 */
export type ExportDisk = (disk: DiskSource, socketPath: string) => Promise<DiskBacking>;
