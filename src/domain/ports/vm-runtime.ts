/**
 * What the domain needs from a VM runtime (issue 12): boot a microVM whose root disk is read
 * lazily from a source the domain provides (a file of a commit, served from the chunk store),
 * with every write going to the VM's own copy-on-write layer; then pause, resume, exec and stop
 * it. The QEMU implementation lives in src/runtime/qemu/; nothing here knows QEMU.
 */

/** Read-only bytes of a VM's base disk, read on demand (never copied whole). */
export interface DiskSource {
  /**
   * Names the bytes, when the source knows them: sources with one id hold the same bytes, so
   * the VMs of one disk share one export of it (and its cache).
   */
  readonly id?: string;
  /** Length of the disk in bytes. */
  readonly size: number;
  /**
   * `length` bytes from `offset` (offset + length <= size). MUST verify what it returns (the
   * chunk store checks every chunk's digest) and reject rather than return wrong bytes.
   */
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * A read-only disk image file of this host, attached whole and never written (a dataset's
 * image, built by the DatasetImages port). The guest mounts it read-only at /data.
 */
export interface ImageFile {
  readonly path: string;
  /** Length in bytes. */
  readonly size: number;
}

export interface VmSpec {
  /** The VM's id (a UUID): names its work directory and its process. */
  id: string;
  vcpuCount: number;
  memSizeMib: number;
  /** The base root disk (a raw ext4 image); the VM writes to its own overlay above it. */
  disk: DiskSource;
  /**
   * Size of the VM's root disk in bytes (its overlay), at least `disk.size`; default `disk.size`.
   * The guest grows its root file system to fill a larger disk at boot.
   */
  diskSizeBytes?: number;
  /** A second disk, read-only, that the guest mounts at /data (a dataset's files). */
  dataDisk?: ImageFile;
  /**
   * A fresh identity per VM: a snapshot booted twice must not share these. The runtime also
   * mixes fresh entropy into every VM's random pool, resumed ones included.
   */
  identity: { hostname: string; machineId: string };
  /**
   * Resume this machine state instead of booting: a VmSnapshot of this runtime (a branch of a
   * live VM: the VM stands on the snapshot's disk, and `disk` is ignored) or a state saved in a
   * commit (`disk` then is the disk saved with it). Rejected with `unprocessable` when its
   * format is not this runtime's (the caller may boot `disk` cold instead).
   */
  resume?: SavedMachine;
}

/** A machine's memory and device state, as a runtime saved it. */
export interface SavedMachine {
  /** The runtime and machine model the state is for (VmRuntime.format). */
  readonly format: string;
  readonly vcpuCount: number;
  readonly memSizeMib: number;
  /** The guest's RAM, byte for byte (mostly zeros, which deduplicate). */
  readonly memory: DiskSource;
  /** Everything else: CPU and device registers, in the runtime's own encoding. */
  readonly deviceState: DiskSource;
}

/**
 * A file of a machine's state as a snapshot holds it (its memory, its device state), which a
 * commit reads whole: into the reader's buffers too, reused from piece to piece (fresh memory
 * for each piece of a guest's RAM costs a page fault per 4 KiB, slow under nested virtualisation).
 */
export interface StateFile extends DiskSource {
  /** Fills `into` with the bytes from `offset` on (offset + into.length <= size); rejects on a short read. */
  readInto(into: Buffer, offset: number): Promise<void>;
}

/** A byte range of a disk. */
export interface DiskRange {
  offset: number;
  length: number;
}

/**
 * A VM frozen at one instant: its disk, memory and devices as they were, kept by the runtime
 * (whatever the VM does next) until released. VMs resumed from it share its disk layers.
 */
export interface VmSnapshot extends SavedMachine {
  readonly memory: StateFile;
  readonly deviceState: StateFile;
  /** The disk at that instant: the VM's base disk with everything it wrote over it. */
  readonly disk: DiskSource;
  /** Where `disk` may differ from the base disk: sorted, disjoint ranges, the VM's writes. */
  changedRanges(): Promise<DiskRange[]>;
  /** Frees what only this snapshot holds. Idempotent; VMs resumed from it keep running. */
  release(): Promise<void>;
}

export type RuntimeVmState = 'booting' | 'running' | 'paused' | 'dead';

export interface ExecRequest {
  command: readonly string[];
  env?: Readonly<Record<string, string>>;
  stdin?: Buffer;
  workingDir?: string;
  /** The command is killed after this long; the answer then carries exit code 124. */
  timeoutSecs?: number;
}

export interface ExecResult {
  exitCode: number;
  /** At most MAX_EXEC_OUTPUT bytes of each stream; `truncated` says when more was cut. */
  stdout: Buffer;
  stderr: Buffer;
  truncated: boolean;
}

/** The most output of one exec stream that is kept and answered. */
export const MAX_EXEC_OUTPUT = 4 * 1024 * 1024;

/** The largest guest file read or written whole (its bytes are held in the server's memory). */
export const MAX_VM_FILE_BYTES = 32 * 1024 * 1024;

export type ExecStreamName = 'stdout' | 'stderr';

export interface WriteFileOptions {
  /** Permission bits (0 to 0o7777); absent: an existing file's, else 0o644. */
  mode?: number;
  /** Create the missing parent directories first (`mkdir -p`). */
  createDirs?: boolean;
}

/** A command started by RunningVm.execStream. */
export interface ExecStream {
  /**
   * Hands the command's output over as the guest produces it, each piece to `onOutput` (awaited,
   * so a slow consumer slows the reading, never the server's memory), in order within each
   * stream, until the command exits; resolves with its exit code (124 when killed at its
   * timeout). When `signal` aborts, the command's process group is killed, no more output is
   * handed over, and it resolves once the command is gone. Call once, right after execStream.
   */
  pump(onOutput: (stream: ExecStreamName, data: Buffer) => Promise<void>, signal: AbortSignal): Promise<number>;
}

export interface RunningVm {
  readonly id: string;
  /** The state of the process behind the VM, as of now. */
  state(): RuntimeVmState;
  /** Freezes the vCPUs (memory stays). Idempotent. */
  pause(): Promise<void>;
  /** Resumes a paused VM. Idempotent. */
  resume(): Promise<void>;
  /** Runs a command through the guest agent. `conflict` when the VM is not running. */
  exec(request: ExecRequest): Promise<ExecResult>;
  /**
   * Freezes the VM at this instant (vCPUs stopped) and keeps its disk, memory and devices in a
   * snapshot; the VM then runs on unless `keepPaused` or it was paused. With `flushGuest` a
   * running guest first writes out what its page cache holds, so that the snapshot's disk alone
   * boots cold with every write (a commit); a branch, which resumes the memory too, needs not.
   * `resumes` says how many VMs will be resumed from the snapshot: the runtime may prepare for
   * them, and hand the last of them what it holds instead of a copy (after which the snapshot
   * resumes no more VMs and its `memory` is gone); absent, no VM will be.
   * `conflict` when the VM is not running or paused.
   */
  snapshot(options: { keepPaused: boolean; flushGuest: boolean; resumes?: number }): Promise<VmSnapshot>;
  /**
   * Starts a command whose output is read while it runs (see ExecStream.pump). Rejects before
   * anything runs for a request exec() would refuse (`invalid`, `conflict`).
   */
  execStream(request: ExecRequest): Promise<ExecStream>;
  /**
   * A guest file's bytes. `invalid` for a relative path, `not_found` when it does not exist,
   * `unprocessable` when it cannot be read (a directory, say), `too_large` past `maxBytes`
   * (never more than that is held), `conflict` when the VM is not running.
   */
  readFile(path: string, maxBytes: number): Promise<Buffer>;
  /**
   * Replaces (or creates) a guest file atomically: the bytes go to a temporary file in the
   * same directory, renamed over `path` once complete, so a reader sees the old file or the
   * new one. `invalid` for a relative path, `not_found` when its directory is missing (and
   * not `createDirs`), `unprocessable` when it cannot be written (`path` is a directory, a
   * read-only file system), `conflict` when the VM is not running.
   */
  writeFile(path: string, content: Buffer, options: WriteFileOptions): Promise<void>;
  /** Ends the VM's process and removes its work directory (overlay included). Idempotent. */
  stop(): Promise<void>;
  /** Called once when the process exits for any reason other than stop(). */
  onExit(listener: (reason: string) => void): void;
}

export interface VmRuntime {
  /** Names the runtime and machine model whose saved states it can resume (SavedMachine.format). */
  readonly format: string;
  /**
   * Boots a VM and resolves once its guest agent answers (state `running`). Rejects (and leaves
   * no process or file behind) when the boot fails or takes longer than the runtime's limit.
   */
  start(spec: VmSpec): Promise<RunningVm>;
  /** Stops every VM this runtime started (server shutdown): no VM outlives its server. */
  close(): Promise<void>;
}
