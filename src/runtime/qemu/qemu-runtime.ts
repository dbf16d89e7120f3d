/**
 * VmRuntime on QEMU microVMs: one `qemu-system-x86_64 -M microvm` process per VM, booting the
 * guest assets of scripts/vm/build-guest.sh directly (uncompressed `vmlinux`, `initrd.cpio`),
 * its root disk a qcow2 overlay over the spec's disk, exec through qemu-guest-agent.
 *
 * Each VM has a work directory under the runtime directory:
 *
 * ```
 * <runtimeDir>/            all of it removed by the next open() after a server crash
 * ├── <vm id>/              removed by stop()
 * │   ├── qemu.pid          the QEMU process id, which is also its process group id
 * │   ├── overlay.qcow2     everything the VM writes; what it stands on is never written
 * │   ├── device.state      a saved device state being resumed (from a commit)
 * │   ├── qmp.sock          QMP: stop, cont, snapshots, and the STOP/RESUME/SHUTDOWN events
 * │   ├── dev.sock          a snapshot's device state, received from QEMU's migration
 * │   ├── qga.sock          the guest agent's virtio-serial port org.qemu.guest_agent.0
 * │   └── console.log       the serial console (and QEMU's own messages), its first 1 MiB
 * ├── disks/<id>.sock       base disks served (NBD), shared by the VMs of one disk
 * └── layers/<id>.qcow2     overlays copied by snapshots: read-only, shared by the VMs above
 * <memoryDir>/              a tmpfs (/dev/shm), likewise swept by open()
 * ├── <vm id>.ram           each VM's RAM, a shared file mapping: a snapshot copies it
 * ├── snapshots/<id>.ram, <id>.dev   a snapshot's RAM and device state
 * ├── templates/<id>.ram, <id>.dev   boot templates: kernels held in the initramfs (boot-templates.ts)
 * └── saved/<hash>.ram      the RAM of commits' saved machines, the last few resumed
 * ```
 *
 * A snapshot of a paused VM copies its overlay into a layer (sparse: what the VM wrote), copies
 * its RAM file and saves the device state with QEMU's migration stream, RAM left out
 * (x-ignore-shared): tens of KiB. A VM resumed from it copies the RAM file
 * (holes stay holes), stands on the layers and loads the device state with -incoming.
 *
 * Each QEMU runs in a process group of its own, niced below the server, and where the host's
 * cgroups allow in a control group of its own with a memory limit (the guest's RAM and QEMU's
 * overhead) and a CPU quota (one core per vCPU): vm-cgroups.ts.
 *
 * No VM outlives its server: close() stops them all, a process 'exit' handler kills what is
 * left, and after a crash (when no handler ran) the next server's open() kills every QEMU still
 * running in a leftover work directory or in a leftover control group, and removes both.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, readlink, rename, rm, statfs } from 'node:fs/promises';
import { createServer } from 'node:net';
import { setPriority } from 'node:os';
import { join, resolve } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { conflict, insufficientStorage, invalid, unavailable, unprocessable } from '../../domain/errors.js';
import type {
  DiskSource,
  ExecRequest,
  ExecResult,
  ExecStream,
  RunningVm,
  RuntimeVmState,
  VmRuntime,
  VmSpec,
  WriteFileOptions,
} from '../../domain/ports/vm-runtime.js';
import { LruMap } from '../../lib/lru-map.js';
import { sha256 } from '../../lib/sha256.js';
import { BootTemplates, HOLD_ARGUMENT, HOLD_MARKER, type BootTemplate } from './boot-templates.js';
import type { ExportDisk } from './disk-export.js';
import { createOverlay, dropStack, holdStack, Shared, type DiskExport, type DiskStack } from './disk-stack.js';
import { connectWhenListening } from './json-lines.js';
import { QgaClient } from './qga-client.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';
import { copySparse, QemuSnapshot, writeSourceToFile } from './qemu-snapshot.js';
import { vmLimits, VmCgroups, type CgroupLog, type VmCgroup } from './vm-cgroups.js';

export interface QemuRuntimeOptions {
  /** Holds one work directory per VM (layout above); created when missing. */
  readonly runtimeDir: string;
  /** Holds `vmlinux` and `initrd.cpio` (SNAPFORK_VM_ASSETS, built by scripts/vm/build-guest.sh). */
  readonly assetsDir: string;
  /** Serves each VM's base disk to QEMU (the NBD server of src/runtime/nbd/). */
  readonly exportDisk: ExportDisk;
  /**
   * Holds the VMs' RAM files and snapshots' memory: a tmpfs, since guest RAM in a file on disk
   * would be written back to the disk. Default: a directory of /dev/shm named after runtimeDir.
   */
  readonly memoryDir?: string;
  /** How long a boot may take, from spawning QEMU to the guest agent's answer. Default 60 s. */
  readonly bootTimeoutMs?: number;
  /** How long one guest agent command may go unanswered before the guest is taken to hang. Default 30 s. */
  readonly agentTimeoutMs?: number;
  /**
   * `auto`: each VM in a control group of its own with its memory and CPU limits, where the
   * host's cgroups are writable (else the VMs run without: QemuRuntime.withoutCgroups says why);
   * `off`: never.
   */
  readonly cgroups: 'auto' | 'off';
  /** Where a VM's limits that could not be applied or removed are told (the server's pino logger fits). */
  readonly log: CgroupLog;
}

const DEFAULT_BOOT_TIMEOUT_MS = 60_000;
const DEFAULT_AGENT_TIMEOUT_MS = 30_000;
/** Enough for a whole boot log and a kernel panic; a guest flooding its console costs no more. */
const CONSOLE_LOG_LIMIT = 1024 * 1024;
/** What a boot failure's message quotes of the console. */
const CONSOLE_TAIL = 4096;
/** sockaddr_un holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH = 107;
const IDENTITY_HOSTNAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const IDENTITY_MACHINE_ID = /^[0-9a-f]{32}$/;

const execFileAsync = promisify(execFile);
/** The niceness of VM processes, above the server's 0. */
const VM_NICENESS = 5;
/** The MIGRATION event statuses that end a migration. */
const MIGRATION_ENDS = new Set(['completed', 'failed', 'cancelled']);
/** Saved machines' RAM files kept on the memory tmpfs for the next VMs of the same commit. */
const SAVED_MEMORY_FILES = 4;
/** What a saved state depends on besides QEMU's version: the machine, accelerator, CPU and devices. */
const machineModel = (accelerator: Accelerator) =>
  `microvm ${accelerator} ${accelerator === 'kvm' ? 'host' : 'qemu64'} virtio-blk virtio-serial ram-file x-ignore-shared v1`;

/** How QEMU runs a guest's CPUs: KVM where it works on this host, else TCG (emulation). */
export type Accelerator = 'kvm' | 'tcg';
/** How long the KVM probe's boot may take; a working KVM needs well under a second. */
const KVM_PROBE_TIMEOUT_MS = 10_000;

/** Whether the sockets of every VM's work directory under `runtimeDir` fit a Unix socket path. */
export function holdsSocketPaths(runtimeDir: string): boolean {
  return Buffer.byteLength(join(resolve(runtimeDir), '00000000-0000-0000-0000-000000000000', 'disk.sock')) <= MAX_SOCKET_PATH;
}

export class QemuRuntime implements VmRuntime {
  private readonly vms = new Set<QemuVm>();
  /** Exports of base disks by DiskSource.id, shared by the VMs of one disk. */
  private readonly exports = new Map<string, Promise<DiskExport>>();
  /**
   * The RAM of saved machines written out, by the memory's DiskSource.id, least recently used
   * first: the VMs resumed from one commit copy one file instead of each reading the chunks.
   */
  private readonly savedMemory = new LruMap<string, Promise<string>>(SAVED_MEMORY_FILES, {
    // A VM copying an evicted file still reads it whole: its removal only unlinks the name.
    onEvict: (_, path) => void path.then((p) => rm(p, { force: true })).catch(() => undefined),
  });
  private readonly templates: BootTemplates;
  private readonly runtimeDir: string;
  private readonly memoryDir: string;
  /** QEMU's version and the machine model: a saved state resumes only on the same. */
  readonly format: string;
  private readonly assetsDir: string;
  private readonly bootTimeoutMs: number;
  private readonly agentTimeoutMs: number;
  /** TCG's TSC ticks at the host's rate; telling the kernel spares a calibration that can hang. */
  private readonly tscKhz: number | undefined;
  private closed = false;
  private readonly killAllOnExit = () => {
    for (const vm of this.vms) vm.killAtExit();
  };

  /**
   * A runtime over `options.runtimeDir`, which it owns alone (one server per directory): what a
   * previous server left there is killed and removed first.
   */
  static async open(options: QemuRuntimeOptions): Promise<QemuRuntime> {
    const { stdout } = await execFileAsync('qemu-system-x86_64', ['--version'], { timeout: 30_000 });
    const version = /version (\S+)/.exec(stdout)?.[1] ?? stdout.trim();
    const accelerator = await probeAccelerator(join(options.assetsDir, 'vmlinux'));
    let cgroups: VmCgroups | undefined;
    let withoutCgroups: string | undefined;
    if (options.cgroups === 'auto') {
      try {
        cgroups = await VmCgroups.open(sha256(resolve(options.runtimeDir)).slice(0, 16), options.log);
      } catch (error) {
        withoutCgroups = error instanceof Error ? error.message : String(error);
      }
    }
    const runtime = new QemuRuntime(options, accelerator, `qemu ${version}; ${machineModel(accelerator)}`, cgroups, withoutCgroups);
    try {
      await runtime.sweepLeftovers();
    } catch (error) {
      await runtime.close();
      throw error;
    }
    return runtime;
  }

  private constructor(
    private readonly options: QemuRuntimeOptions,
    /** Chosen at open by probeAccelerator. */
    readonly accelerator: Accelerator,
    format: string,
    /** Undefined where VMs run without control groups. */
    private readonly cgroups: VmCgroups | undefined,
    /** Why VMs run without control groups although `auto` asked for them; undefined otherwise. */
    readonly withoutCgroups: string | undefined,
  ) {
    this.format = format;
    this.tscKhz = accelerator === 'tcg' ? hostTscKhz() : undefined;
    // Absolute: QEMU runs in the work directory, and a leftover QEMU is recognised by its cwd.
    this.runtimeDir = resolve(options.runtimeDir);
    this.memoryDir = resolve(options.memoryDir ?? defaultMemoryDir(this.runtimeDir));
    this.assetsDir = resolve(options.assetsDir);
    this.templates = new BootTemplates(join(this.memoryDir, 'templates'));
    this.bootTimeoutMs = options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    this.agentTimeoutMs = options.agentTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS;
    if (!holdsSocketPaths(this.runtimeDir)) {
      throw new Error(`the VM runtime directory ${this.runtimeDir} is too long for Unix socket paths in it (${MAX_SOCKET_PATH} bytes)`);
    }
    process.on('exit', this.killAllOnExit);
  }

  async start(spec: VmSpec): Promise<QemuVm> {
    checkSpec(spec);
    if (this.closed) throw new Error('the VM runtime is closed');
    const { resume } = spec;
    if (resume && (resume.format !== this.format || resume.vcpuCount !== spec.vcpuCount || resume.memSizeMib !== spec.memSizeMib)) {
      throw unprocessable(`the saved machine (${resume.format}, ${resume.vcpuCount} vCPU, ${resume.memSizeMib} MiB) does not fit this VM (${this.format}, ${spec.vcpuCount} vCPU, ${spec.memSizeMib} MiB)`);
    }
    const assets = { kernel: join(this.assetsDir, 'vmlinux'), initrd: join(this.assetsDir, 'initrd.cpio') };
    await assertReadable([assets.kernel, assets.initrd], this.assetsDir);
    await this.assertRoomForRam(spec.memSizeMib);
    if (resume) return this.launch(spec, assets, undefined);
    const shape = await BootTemplates.shapeOf(spec, [assets.kernel, assets.initrd]);
    const template = this.templates.get(shape);
    if (template) {
      try {
        return await this.launch(spec, assets, { shape, template });
      } catch (error) {
        if (!(error instanceof Error && error.cause instanceof TemplateNotLoaded)) throw error;
        // A template that does not load is dropped, and this VM boots its kernel (saving another).
        this.options.log.warn({ err: error, vm_id: spec.id }, 'the VM did not resume its boot template: booting its kernel instead');
        await this.templates.drop(shape, template);
      }
    }
    return this.launch(spec, assets, { shape });
  }

  /**
   * Starts a VM's QEMU and boots it: from `spec.resume`, else from the boot template of `boot`'s
   * shape when given, else from the kernel (saving the shape's template where it holds, when
   * none is saved yet).
   */
  private async launch(spec: VmSpec, assets: { kernel: string; initrd: string }, boot: { shape: string; template?: BootTemplate } | undefined): Promise<QemuVm> {
    const { resume } = spec;
    const workDir = join(this.runtimeDir, spec.id);
    try {
      await mkdir(workDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw conflict(`VM ${spec.id} is already running`);
      throw error;
    }
    const memoryFile = join(this.memoryDir, `${spec.id}.ram`);
    let stack: DiskStack | undefined;
    let vm: QemuVm | undefined;
    let cgroup: VmCgroup | undefined;
    try {
      cgroup = await this.cgroupOf(spec);
      // A live snapshot of this runtime: stand on its layers. Anything else: a base disk to export.
      const snapshot = resume instanceof QemuSnapshot && resume.owner === this ? resume : undefined;
      stack = snapshot ? holdStack(snapshot.stack) : { base: await this.exportOf(spec.disk), layers: [] };
      // An overlay may be larger than its backing: the guest then sees a larger disk.
      const size = snapshot ? snapshot.disk.size : (spec.diskSizeBytes ?? spec.disk.size);
      const overlay = join(workDir, 'overlay.qcow2');
      let incoming: string | undefined;
      const memory = async () => {
        if (snapshot) {
          await snapshot.memoryInto(memoryFile);
          incoming = snapshot.deviceFile;
        } else if (resume) {
          await copySparse(await this.savedMemoryFile(resume.memory), memoryFile);
          incoming = join(workDir, 'device.state');
          await writeSourceToFile(resume.deviceState, incoming);
        } else if (boot?.template) {
          // Copies: a template dropped meanwhile (its files unlinked) is still read whole.
          incoming = join(workDir, 'device.state');
          await Promise.all([copySparse(boot.template.memoryFile, memoryFile), copyFile(boot.template.deviceFile, incoming)]);
        }
      };
      await Promise.all([snapshot ? snapshot.overlayInto(overlay, size) : createOverlay(overlay, stack, size), memory()]);
      // A resumed snapshot's devices are its VM's: the same data disk too.
      const machine = snapshot ? { ...spec, dataDisk: snapshot.dataDisk } : spec;
      const args = qemuArgs(machine, { workDir, ...assets, overlay, memoryFile, incoming: incoming !== undefined }, this.accelerator, this.tscKhz);
      vm = new QemuVm(this, machine, workDir, { stack, overlay, memoryFile, size }, args, this.agentTimeoutMs, cgroup, () => this.vms.delete(vm!));
      this.vms.add(vm);
      const deadline = Date.now() + this.bootTimeoutMs;
      if (resume) await vm.boot(deadline, { from: 'snapshot', deviceState: incoming! });
      else if (boot?.template) await vm.boot(deadline, { from: 'template', deviceState: incoming! });
      else await vm.boot(deadline, { from: 'kernel', onHeld: (held) => this.saveTemplate(boot!.shape, held) });
      return vm;
    } catch (error) {
      let reason = error instanceof Error ? error.message : String(error);
      let consoleText = '';
      if (vm) {
        await vm.halt();
        // A QEMU that ended by itself failed the step that was waiting (a closed socket, say): its end is the news.
        reason = vm.endedUnasked ? `QEMU ${vm.endedUnasked}` : reason;
        consoleText = await consoleTail(workDir);
        await vm.stop();
      } else {
        if (stack) await dropStack(stack);
        await cgroup?.remove();
        await rm(workDir, { recursive: true, force: true });
        await rm(memoryFile, { force: true });
      }
      throw new Error(`VM ${spec.id} did not ${resume || boot?.template ? 'resume' : 'boot'}: ${reason}${consoleText && `\n--- console ---\n${consoleText}`}`, { cause: error });
    }
  }

  /**
   * Saves a VM held in its initramfs as the boot template of its shape, unless one is saved or
   * being saved; a failure is logged and leaves the shape without (a later boot tries again).
   */
  private async saveTemplate(shape: string, held: QemuVm): Promise<void> {
    const files = this.templates.claim(shape);
    if (!files) return;
    try {
      await held.saveHeld(files);
      this.templates.add(shape, files);
    } catch (error) {
      await this.templates.abandon(shape, files);
      if (held.state() !== 'dead') this.options.log.warn({ err: error, vm_id: held.id }, 'the VM boot template was not saved');
    }
  }

  /**
   * The control group of a VM about to start, with its limits; undefined where VMs run without
   * (and when it cannot be made, which is logged: a VM without limits beats no VM).
   */
  private async cgroupOf(spec: VmSpec): Promise<VmCgroup | undefined> {
    try {
      return await this.cgroups?.create(spec.id, vmLimits(spec.memSizeMib, spec.vcpuCount));
    } catch (error) {
      this.options.log.warn({ err: error, vm_id: spec.id }, 'VM runs without its memory and CPU limits: its cgroup could not be made');
      return undefined;
    }
  }

  /**
   * A file of a saved machine's RAM: written once per memory id (or each time, for a source
   * without one) and kept for the next VMs of it, at most SAVED_MEMORY_FILES of them.
   */
  private savedMemoryFile(memory: DiskSource): Promise<string> {
    const key = memory.id ?? randomUUID();
    const written = this.savedMemory.get(key) ?? (async () => {
      const path = join(this.memoryDir, 'saved', `${sha256(key).slice(0, 32)}.ram`);
      await writeSourceToFile(memory, `${path}.part`);
      await rename(`${path}.part`, path);
      return path;
    })();
    written.catch(() => this.savedMemory.peek(key) === written && this.savedMemory.delete(key));
    this.savedMemory.set(key, written);
    return written;
  }

  /**
   * `insufficient_storage` unless the memory tmpfs has room for a VM's whole RAM: a guest whose
   * RAM file cannot grow is killed by SIGBUS at the page it touches, so refuse it up front.
   */
  private async assertRoomForRam(memSizeMib: number): Promise<void> {
    const { bavail, bsize } = await statfs(this.memoryDir);
    const freeMib = Math.floor((bavail * bsize) / (1024 * 1024));
    if (freeMib < memSizeMib) {
      throw insufficientStorage(`no room for a VM of ${memSizeMib} MiB: ${freeMib} MiB free for VM memory on ${this.memoryDir}`);
    }
  }

  /** Where snapshots keep their RAM and device state. */
  get snapshotsDir(): string {
    return join(this.memoryDir, 'snapshots');
  }

  /** Where snapshots freeze VMs' overlays. */
  get layersDir(): string {
    return join(this.runtimeDir, 'layers');
  }

  /** The export of a base disk, shared with every VM of a disk with the same id. */
  private async exportOf(disk: DiskSource): Promise<DiskExport> {
    const key = disk.id;
    const existing = key === undefined ? undefined : this.exports.get(key);
    if (existing) {
      const shared = await existing;
      shared.shared.hold();
      return shared;
    }
    const made = (async (): Promise<DiskExport> => {
      // A fresh socket name each time: an export being freed may still hold its old one.
      const backing = await this.options.exportDisk(disk, join(this.runtimeDir, 'disks', `${randomUUID().slice(0, 18)}.sock`));
      const shared = new Shared(async () => {
        if (key !== undefined && this.exports.get(key) === made) this.exports.delete(key);
        await backing.close();
      });
      return { shared, filename: backing.filename, source: disk };
    })();
    if (key !== undefined) {
      this.exports.set(key, made);
      made.catch(() => this.exports.get(key) === made && this.exports.delete(key));
    }
    return made;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.vms].map((vm) => vm.stop()));
    await this.cgroups?.close();
    // Snapshots not yet released die with their runtime: nothing can resume them any more.
    await rm(this.memoryDir, { recursive: true, force: true });
    process.off('exit', this.killAllOnExit);
  }

  /**
   * Kills the QEMU of every work directory left by a server that died without stopping its VMs
   * (a pid is only killed when that process still runs in that directory, so a reused pid is
   * safe), and removes the directories.
   */
  private async sweepLeftovers(): Promise<void> {
    await mkdir(this.runtimeDir, { recursive: true });
    for (const name of await readdir(this.runtimeDir)) {
      const workDir = join(this.runtimeDir, name);
      const pid = Number(await readFile(join(workDir, 'qemu.pid'), 'utf8').catch(() => ''));
      if (Number.isSafeInteger(pid) && pid > 0 && (await readlink(`/proc/${pid}/cwd`).catch(() => '')) === workDir) {
        killGroup(pid);
      }
      await rm(workDir, { recursive: true, force: true });
    }
    await mkdir(this.layersDir);
    await mkdir(join(this.runtimeDir, 'disks'));
    await rm(this.memoryDir, { recursive: true, force: true });
    await mkdir(this.snapshotsDir, { recursive: true });
    await mkdir(join(this.memoryDir, 'saved'));
    await mkdir(join(this.memoryDir, 'templates'));
  }
}

/**
 * How a VM boots: its kernel (`onHeld` runs while the initramfs holds, and the VM goes on after
 * it), a boot template's device state (its RAM already in place), or a snapshot's or saved
 * machine's device state, resumed where it was.
 */
type BootPlan =
  | { from: 'kernel'; onHeld: (vm: QemuVm) => Promise<void> }
  | { from: 'template'; deviceState: string }
  | { from: 'snapshot'; deviceState: string };

/** A boot template's state did not load: the runtime drops it and boots the kernel instead. */
class TemplateNotLoaded extends Error {
  constructor(cause: unknown) {
    super(`the boot template did not load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** One VM: its QEMU process, QMP and guest agent connections, and work directory. */
export class QemuVm implements RunningVm {
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly exited: Promise<void>;
  private qmp: QmpClient | undefined;
  /** Set once the guest agent answers and the guest has its identity. */
  private qga: QgaClient | undefined;
  /** That agent, while it connects: agent work on a resumed VM waits for it. */
  private agent: Promise<QgaClient> | undefined;
  /** A resumed VM runs from its device state's load on, before its agent answers. */
  private resumed = false;
  private paused = false;
  /** Why the process ended; set once it has. */
  private exitReason: string | undefined;
  private shutdownReason: string | undefined;
  private stopRequested = false;
  /** Set once this runtime has sent the process SIGKILL. */
  private killSent = false;
  private killedBySignal = false;
  private stopping: Promise<void> | undefined;
  private readonly exitListeners: ((reason: string) => void)[] = [];
  /** Execs waiting for a paused VM to resume (or to die). */
  private wakeups: (() => void)[] = [];
  /** What the VM's overlay stands on. */
  private readonly stack: DiskStack;
  /** The qcow2 file QEMU writes. */
  private readonly overlay: string;
  /**
   * After a snapshot's migration QEMU leaves the disks inactive until `cont`: a VM kept paused
   * there is run for an instant before its next snapshot (QEMU 7.2 can reactivate only so).
   */
  private disksInactive = false;
  /** Waiters for the end of the migration under way (see migrate). */
  private readonly migrationEnded: ((status: string) => void)[] = [];
  /** Snapshots run one at a time. */
  private snapshotting: Promise<unknown> = Promise.resolve();
  readonly id: string;
  private readonly spec: VmSpec;
  /** Resolves once the process has ended and its control group is gone. */
  private readonly cgroupRemoved: Promise<void>;

  constructor(
    private readonly runtime: QemuRuntime,
    spec: VmSpec,
    /** The VM's work directory (layout in this module's comment). */
    readonly workDir: string,
    private readonly disk: { stack: DiskStack; overlay: string; memoryFile: string; size: number },
    args: string[],
    private readonly agentTimeoutMs: number,
    cgroup: VmCgroup | undefined,
    private readonly forget: () => void,
  ) {
    this.id = spec.id;
    this.spec = spec;
    this.stack = disk.stack;
    this.overlay = disk.overlay;
    // detached: its own process group, so that one kill ends QEMU and anything it started.
    // stdin is the serial console's input: the line that lets a held initramfs go on.
    this.child = spawn('qemu-system-x86_64', args, { cwd: workDir, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin!.on('error', () => undefined); // a QEMU that exited: its 'exit' event says why
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.killedBySignal = signal !== null;
        resolve(this.onProcessExit(signal !== null ? `was killed by ${signal}` : `exited with code ${code}`));
      });
      // A spawn that fails (no QEMU installed) emits 'error', and maybe no 'exit'.
      this.child.once('error', (error) => this.child.pid === undefined && resolve(this.onProcessExit(`could not be started: ${error.message}`)));
    });
    // A group is removed once its process has ended, whether stopped or ended by itself.
    this.cgroupRemoved = this.exited.then(() => cgroup?.remove());
    if (this.child.pid !== undefined) {
      // At once: the memory QEMU touches before the move would be charged to the server.
      cgroup?.adopt(this.child.pid);
      writeFileSync(join(workDir, 'qemu.pid'), `${this.child.pid}\n`);
      // Guests yield the CPU to the server: busy VMs must not starve the API that manages them.
      // (Their memory and CPU are also bounded by their cgroup, where there is one.)
      try {
        setPriority(this.child.pid, VM_NICENESS);
      } catch {
        // Already exited: its 'exit' event says why.
      }
    }
    this.log = createWriteStream(join(workDir, 'console.log'));
    this.log.on('error', () => undefined); // the log is best effort; it never stops the VM
    let logged = 0;
    const record = (chunk: Buffer) => {
      const room = CONSOLE_LOG_LIMIT - logged;
      if (room > 0) this.log.write(chunk.subarray(0, room));
      logged += Math.min(room, chunk.length);
    };
    this.child.stdout!.on('data', record);
    this.child.stderr!.on('data', record);
  }

  /** The QEMU process id (also its process group id). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  state(): RuntimeVmState {
    if (this.exitReason !== undefined) return 'dead';
    if (!this.qga && !this.resumed) return 'booting';
    return this.paused ? 'paused' : 'running';
  }

  /**
   * Why the process ended, when it ended without this runtime killing it. A guest that shut
   * down counts even if the kill came while QEMU was still exiting (it closes its sockets first).
   */
  get endedUnasked(): string | undefined {
    return this.shutdownReason !== undefined || !(this.killSent && this.killedBySignal) ? this.exitReason : undefined;
  }

  /**
   * Connects QMP and the guest agent, and waits until the agent answers guest-ping and the guest
   * has its identity. A VM booting its kernel holds in the initramfs (HOLD_ARGUMENT), where
   * `onHeld` may save it as a boot template before it goes on; one booted from a template loads
   * that state and goes on from there. A resumed VM (`snapshot`) runs as soon as its state is
   * loaded: boot resolves then, its agent connecting meanwhile (agent work waits for it; a VM
   * whose agent does not answer by `deadline` is killed). On failure the caller halts the VM:
   * the process may still run.
   */
  async boot(deadline: number, plan: BootPlan): Promise<void> {
    // At once, before any await: the console is read from the process's start.
    const watch = plan.from === 'kernel' ? this.watchForHold() : undefined;
    const gaveUp = () => this.exitReason !== undefined;
    // Past the deadline the process is killed, which fails whichever step is still waiting.
    let late = false;
    const limit = setTimeout(() => {
      late = true;
      this.kill();
    }, Math.max(0, deadline - Date.now()));
    try {
      const qmpSocket = await connectWhenListening(join(this.workDir, 'qmp.sock'), deadline, gaveUp);
      this.qmp = await QmpClient.open(qmpSocket, (event) => this.onQmpEvent(event));
      this.agent = this.connectAgent(deadline, gaveUp);
      // Awaited below (or by agent work): a step that fails first leaves it unhandled otherwise.
      this.agent.catch(() => undefined);
      if (plan.from === 'snapshot') {
        // Its identity is the parent's until the agent sets it: agent work waits for that.
        this.agent.catch(() => this.kill());
        await this.loadDeviceState(plan.deviceState);
        this.resumed = true;
        return;
      }
      if (plan.from === 'template') {
        await this.loadDeviceState(plan.deviceState).catch((error: unknown) => {
          throw new TemplateNotLoaded(error);
        });
        this.letGo();
      } else {
        void watch!.held.then(async (held) => {
          if (!held) return;
          await plan.onHeld(this);
          this.letGo();
        });
      }
      await this.agent;
      watch?.stop(); // an initramfs that never held (assets of an older build) booted on its own
    } catch (error) {
      if (late) throw new Error('the guest agent did not answer within the boot limit', { cause: error });
      throw error;
    } finally {
      clearTimeout(limit);
    }
  }

  /**
   * Watches the console for the initramfs's hold: `held` resolves true when it says so (a marker
   * split between two reads included), false when the process ends or stop() comes first.
   */
  private watchForHold(): { held: Promise<boolean>; stop: () => void } {
    let stop!: () => void;
    const held = new Promise<boolean>((resolve) => {
      let tail = '';
      const watch = (chunk: Buffer) => {
        const text = tail + chunk.toString('latin1');
        if (text.includes(HOLD_MARKER)) end(true);
        else tail = text.slice(-HOLD_MARKER.length);
      };
      const end = (wasHeld: boolean) => {
        this.child.stdout!.off('data', watch);
        resolve(wasHeld);
      };
      stop = () => end(false);
      this.child.stdout!.on('data', watch);
      void this.exited.then(stop);
    });
    return { held, stop };
  }

  /**
   * Saves this VM, held in its initramfs, into `template`: a sparse copy of its RAM file and its
   * device state, taken while its vCPUs are stopped. The VM is left stopped there either way:
   * letGo() runs it on.
   */
  async saveHeld(template: BootTemplate): Promise<void> {
    const qmp = this.qmp!;
    await qmp.execute('stop');
    await Promise.all([copySparse(this.disk.memoryFile, template.memoryFile), this.saveDeviceState(template.deviceFile)]);
  }

  /** Lets a held initramfs go on: runs the vCPUs (a saveHeld stopped them) and sends its line. */
  private letGo(): void {
    if (this.paused || this.disksInactive) {
      this.disksInactive = false;
      void this.qmp!.execute('cont').catch(() => undefined); // a VM that died: its boot fails on its own
    }
    this.child.stdin!.write('\n');
  }

  private async connectAgent(deadline: number, gaveUp: () => boolean): Promise<QgaClient> {
    const socket = await connectWhenListening(join(this.workDir, 'qga.sock'), deadline, gaveUp);
    const qga = new QgaClient(socket, this.agentTimeoutMs);
    await qga.waitReady(deadline, gaveUp);
    await refreshIdentity(qga, this.spec.identity);
    this.qga = qga;
    return qga;
  }

  async pause(): Promise<void> {
    await this.control('stop');
    this.paused = true;
  }

  async resume(): Promise<void> {
    await this.control('cont');
    this.disksInactive = false;
    this.markRunning();
  }

  exec(request: ExecRequest): Promise<ExecResult> {
    return this.withAgent((qga, untilRunning) => qga.exec(request, untilRunning));
  }

  async execStream(request: ExecRequest): Promise<ExecStream> {
    const stream = await this.withAgent((qga, untilRunning) => qga.execStream(request, untilRunning));
    // Started on a running VM; while it runs on, a pause only holds its polls.
    return { pump: (onOutput, signal) => stream.pump(onOutput, signal).catch((error: unknown) => this.rethrowEnded(error)) };
  }

  readFile(path: string, maxBytes: number): Promise<Buffer> {
    assertAbsolute(path);
    return this.withAgent((qga, untilRunning) => qga.readFile(path, maxBytes, untilRunning));
  }

  writeFile(path: string, content: Buffer, options: WriteFileOptions): Promise<void> {
    assertAbsolute(path);
    return this.withAgent((qga, untilRunning) => qga.writeFile(path, content, options, untilRunning));
  }

  /** Snapshots the VM (RunningVm.snapshot); a failure leaves the VM as it was. */
  snapshot(options: { keepPaused: boolean; flushGuest: boolean; resumes?: number }): Promise<QemuSnapshot> {
    const next = this.snapshotting.then(() => this.takeSnapshot(options));
    this.snapshotting = next.catch(() => undefined);
    return next;
  }

  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      await this.halt();
      await this.cgroupRemoved;
      await dropStack(this.stack);
      await rm(this.workDir, { recursive: true, force: true });
      await rm(this.disk.memoryFile, { force: true });
      this.forget();
    })());
  }

  private async takeSnapshot({ keepPaused, flushGuest, resumes = 0 }: { keepPaused: boolean; flushGuest: boolean; resumes?: number }): Promise<QemuSnapshot> {
    const state = this.state();
    const { qmp } = this;
    if ((state !== 'running' && state !== 'paused') || !qmp) throw conflict(`VM ${this.id} is ${state}: only a running or paused VM can be snapshotted`);
    const wasRunning = state === 'running';
    if (wasRunning && flushGuest) await (await this.readyAgent()).exec({ command: ['sync'] }, () => this.untilRunning());
    if (this.disksInactive) await qmp.execute('cont');
    await qmp.execute('stop');
    this.paused = true;
    const id = randomUUID();
    const files = {
      layer: join(this.runtime.layersDir, `${id}.qcow2`),
      memory: join(this.runtime.snapshotsDir, `${id}.ram`),
      device: join(this.runtime.snapshotsDir, `${id}.dev`),
      // The overlay of the VMs to resume, made now while the copies run: each then copies it.
      overlay: resumes > 0 ? join(this.runtime.snapshotsDir, `${id}.qcow2`) : undefined,
    };
    // The stack the snapshot stands on: the overlay's copy as a new layer over the VM's own.
    const layer = { path: files.layer, shared: new Shared(() => rm(files.layer, { force: true })) };
    const stack = { base: this.stack.base, layers: [layer, ...this.stack.layers] };
    try {
      // Stopping flushed QEMU's qcow2 caches, so the overlay file is whole: its copy is the disk
      // as of now (what the VM wrote, not the base), and the VM writes on in its own. The
      // migration, which inactivates the disks, waits for that copy; the RAM holds still meanwhile.
      // The overlay is copied in the kernel (libuv's copyfile), not by a cp process: a qcow2 file
      // is dense, and starting cp cost the snapshot ~40 ms under load.
      await Promise.all([
        copyFile(this.overlay, files.layer).then(() => this.saveDeviceState(files.device)),
        copySparse(this.disk.memoryFile, files.memory),
        files.overlay && createOverlay(files.overlay, stack, this.disk.size),
      ]);
      holdStack(this.stack);
      const snapshot = await QemuSnapshot.of(this.runtime, this.runtime.format, this.spec, stack, files, this.disk.size, resumes);
      if (wasRunning && !keepPaused) await this.resume();
      return snapshot;
    } catch (error) {
      await Promise.all(Object.values(files).flatMap((file) => (file ? [rm(file, { force: true })] : [])));
      if (wasRunning) await this.resume().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Saves the device state (RAM left out: it is in the RAM file) with QEMU's migration stream,
   * received on a socket of ours: with `exec:cat > file`, QEMU SIGTERMs the cat as soon as it
   * closes the pipe, and a cat still writing under load left the state cut short.
   */
  private async saveDeviceState(path: string): Promise<void> {
    const socketPath = join(this.workDir, 'dev.sock');
    const server = createServer();
    const written = new Promise<void>((resolve, reject) => {
      server.once('connection', (connection) => {
        server.close();
        pipeline(connection, createWriteStream(path)).then(resolve, reject);
      });
      server.once('error', reject);
    });
    written.catch(() => undefined);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
      await this.migrate('migrate', `unix:${socketPath}`, 'the device state was not saved');
      await written;
    } finally {
      server.close();
      await rm(socketPath, { force: true });
    }
    this.disksInactive = true;
  }

  /** Loads a saved device state into a QEMU started with -incoming defer, then runs it. */
  private async loadDeviceState(path: string): Promise<void> {
    await this.migrate('migrate-incoming', `exec:cat ${shellQuote(path)}`, 'the saved state did not load');
    await this.qmp!.execute('cont');
  }

  /**
   * Runs a migration without RAM (x-ignore-shared) and resolves when it completes; rejects when
   * it fails or the VM dies. Its end is told by QEMU's MIGRATION event, at once: polling
   * query-migrate cost a branch up to its poll period at each end.
   */
  private async migrate(command: 'migrate' | 'migrate-incoming', uri: string, failure: string): Promise<void> {
    const qmp = this.qmp!;
    await qmp.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'x-ignore-shared', state: true },
        { capability: 'events', state: true },
      ],
    });
    const ended = new Promise<string>((resolve) => this.migrationEnded.push(resolve));
    await qmp.execute(command, { uri });
    const status = await Promise.race([ended, this.exited.then(() => 'failed' as const)]);
    if (status === 'completed') return;
    const { 'error-desc': error } = this.exitReason === undefined ? ((await qmp.execute('query-migrate')) as { 'error-desc'?: string }) : {};
    throw new Error(`${failure}: ${error ?? this.exitReason ?? status}`);
  }

  onExit(listener: (reason: string) => void): void {
    this.exitListeners.push(listener);
  }

  /** Kills the process (unless it has exited) and waits until it has, its console log written. */
  async halt(): Promise<void> {
    this.stopRequested = true;
    this.kill();
    await this.exited;
    await finished(this.log).catch(() => undefined);
  }

  /** For the process 'exit' handler, where nothing asynchronous runs any more. */
  killAtExit(): void {
    this.kill();
    rmSync(this.workDir, { recursive: true, force: true });
    rmSync(this.disk.memoryFile, { force: true });
  }

  private kill(): void {
    if (this.exitReason !== undefined) return;
    this.killSent = true;
    killGroup(this.child.pid);
  }

  private async control(command: 'stop' | 'cont'): Promise<void> {
    const state = this.state();
    if (state === 'dead' || !this.qmp) throw conflict(`VM ${this.id} is ${state}`);
    await this.qmp.execute(command);
  }

  /**
   * Runs guest agent work on a running VM (`conflict` otherwise), each step waiting while the
   * VM is paused; a failure because the VM ended says so.
   */
  private async withAgent<T>(work: (qga: QgaClient, untilRunning: () => Promise<void>) => Promise<T>): Promise<T> {
    const state = this.state();
    if (state !== 'running') throw conflict(`VM ${this.id} is ${state}, not running`);
    try {
      return await work(await this.readyAgent(), () => this.untilRunning());
    } catch (error) {
      this.rethrowEnded(error);
    }
  }

  /** The guest agent, once it answers (a resumed VM's may still be connecting). */
  private async readyAgent(): Promise<QgaClient> {
    return this.qga ?? (await this.agent!);
  }

  /** A failure of guest agent work, as `conflict` when it failed because the VM ended. */
  private rethrowEnded(error: unknown): never {
    if (this.exitReason !== undefined) throw conflict(`VM ${this.id} ended during the command: QEMU ${this.exitReason}`);
    throw error;
  }

  /** Resolves at once while the VM runs, waits while it is paused, rejects once it is dead. */
  private async untilRunning(): Promise<void> {
    while (this.paused && this.exitReason === undefined) await new Promise<void>((wake) => this.wakeups.push(wake));
    if (this.exitReason !== undefined) throw conflict(`VM ${this.id} is dead`);
  }

  private markRunning(): void {
    this.paused = false;
    const wakeups = this.wakeups;
    this.wakeups = [];
    for (const wake of wakeups) wake();
  }

  private onQmpEvent({ event, data }: QmpEvent): void {
    if (event === 'STOP') this.paused = true;
    else if (event === 'RESUME') this.markRunning();
    else if (event === 'SHUTDOWN' && typeof data?.reason === 'string') this.shutdownReason = data.reason;
    else if (event === 'MIGRATION' && typeof data?.status === 'string' && MIGRATION_ENDS.has(data.status)) {
      for (const resolve of this.migrationEnded.splice(0)) resolve(data.status);
    }
  }

  private onProcessExit(how: string): void {
    if (this.exitReason !== undefined) return;
    this.exitReason = this.shutdownReason ? `shut down (${this.shutdownReason})` : how;
    this.log.end();
    this.qmp?.close();
    this.qga?.close();
    this.markRunning();
    if (this.stopRequested) return;
    for (const listener of this.exitListeners) listener(this.exitReason);
  }
}

function qemuArgs(
  spec: VmSpec,
  paths: { workDir: string; kernel: string; initrd: string; overlay: string; memoryFile: string; incoming: boolean },
  accelerator: Accelerator,
  tscKhz: number | undefined,
): string[] {
  const cmdline = [
    'console=ttyS0 quiet panic=-1',
    ...(tscKhz ? [`tsc_early_khz=${tscKhz}`] : []),
    'tsc=reliable cryptomgr.notests rodata=off',
    // The same for every VM (the agent gives each its identity): a held kernel fits them all.
    HOLD_ARGUMENT,
  ].join(' ');
  const socket = (name: string) => `socket,id=${name},path=${join(paths.workDir, `${name}.sock`)},server=on,wait=off`;
  return [
    ...['-M', 'microvm', '-accel', accelerator, '-cpu', accelerator === 'kvm' ? 'host' : 'qemu64'],
    ...['-m', `${spec.memSizeMib}M`, '-smp', String(spec.vcpuCount)],
    // RAM in a shared file mapping: a snapshot copies the file instead of streaming the RAM.
    ...['-object', `memory-backend-file,id=ram,size=${spec.memSizeMib}M,mem-path=${paths.memoryFile},share=on`, '-machine', 'memory-backend=ram'],
    ...['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
    ...['-kernel', paths.kernel, '-initrd', paths.initrd, '-append', cmdline],
    ...['-drive', `id=root,if=none,format=qcow2,file=${paths.overlay}`, '-device', 'virtio-blk-device,drive=root'],
    // The guest's second virtio-blk disk (/dev/vdb), which its /init mounts at /data.
    ...(spec.dataDisk ? ['-drive', `id=data,if=none,format=raw,readonly=on,file=${spec.dataDisk.path}`, '-device', 'virtio-blk-device,drive=data'] : []),
    ...['-device', 'virtio-serial-device', '-chardev', socket('qga'), '-device', 'virtserialport,chardev=qga,name=org.qemu.guest_agent.0'],
    ...['-chardev', socket('qmp'), '-mon', 'chardev=qmp,mode=control'],
    ...['-serial', 'stdio'],
    ...(paths.incoming ? ['-incoming', 'defer'] : []),
  ];
}

/**
 * Gives a booted or resumed guest its own identity (a resumed snapshot or boot template has its
 * parent's, and the kernel command line carries none), mixes fresh bytes into its random pool
 * (without a hardware RNG under TCG, branches of one snapshot would otherwise draw the same
 * "random" numbers) and sets its clock, which in a resumed guest is its parent's, however old.
 */
async function refreshIdentity(qga: QgaClient, identity: VmSpec['identity']): Promise<void> {
  // Nanoseconds since the epoch; qemu-ga also writes the time to the guest's RTC (hwclock -w).
  await qga.command('guest-set-time', { time: Date.now() * 1_000_000 });
  await qga.overwriteFile('/etc/machine-id', Buffer.from(`${identity.machineId}\n`));
  await qga.overwriteFile('/etc/hostname', Buffer.from(`${identity.hostname}\n`));
  await qga.overwriteFile('/proc/sys/kernel/hostname', Buffer.from(identity.hostname));
  // Written to /dev/urandom, bytes are mixed into the pool (not credited): enough to part branches.
  await qga.overwriteFile('/dev/urandom', randomBytes(512));
}

/** Single-quotes a path for the shell QEMU runs exec: migration commands in. */
function shellQuote(path: string): string {
  return `'${path.replaceAll("'", "'\\''")}'`;
}

/** /dev/shm/snapfork-vm-memory-<hash of runtimeDir>, where there is a /dev/shm; else runtimeDir/memory. */
function defaultMemoryDir(runtimeDir: string): string {
  return existsSync('/dev/shm') ? join('/dev/shm', `snapfork-vm-memory-${sha256(runtimeDir).slice(0, 16)}`) : join(runtimeDir, 'memory');
}

/** Guest paths are absolute: the agent would resolve a relative one against its own directory. */
function assertAbsolute(path: string): void {
  if (!path.startsWith('/') || path.includes('\0')) throw invalid(`path "${path}" is not an absolute path (or holds a NUL)`);
}

function checkSpec(spec: VmSpec): void {
  // The id names a directory; the identity goes into guest files through the agent.
  if (!/^[0-9a-f-]{36}$/i.test(spec.id)) throw invalid(`VM id "${spec.id}" is not a UUID`);
  if (!Number.isSafeInteger(spec.vcpuCount) || spec.vcpuCount < 1) throw invalid(`vcpu count ${spec.vcpuCount} is not a positive integer`);
  if (!Number.isSafeInteger(spec.memSizeMib) || spec.memSizeMib < 16) throw invalid(`memory ${spec.memSizeMib} MiB is not an integer of at least 16`);
  if (!IDENTITY_HOSTNAME.test(spec.identity.hostname)) throw invalid(`hostname "${spec.identity.hostname}" is not a DNS label`);
  if (spec.diskSizeBytes !== undefined && !(Number.isSafeInteger(spec.diskSizeBytes) && spec.diskSizeBytes >= spec.disk.size)) {
    throw invalid(`a root disk of ${spec.diskSizeBytes} bytes cannot hold its base of ${spec.disk.size} bytes`);
  }
  // QEMU's -drive splits its value at commas.
  if (spec.dataDisk?.path.includes(',')) throw invalid(`data disk path "${spec.dataDisk.path}" holds a comma`);
  if (!IDENTITY_MACHINE_ID.test(spec.identity.machineId)) throw invalid(`machine-id "${spec.identity.machineId}" is not 32 lowercase hex digits`);
}

async function assertReadable(files: string[], assetsDir: string): Promise<void> {
  for (const file of files) {
    try {
      await (await open(file)).close();
    } catch {
      throw unavailable(`the VM guest asset ${file} is missing: build the assets with scripts/vm/build-guest.sh (SNAPFORK_VM_ASSETS=${assetsDir})`);
    }
  }
}

/**
 * KVM when /dev/kvm opens and the guest kernel, booted under it without a root disk, reaches its
 * "no root" panic (and QEMU its exit) within KVM_PROBE_TIMEOUT_MS; else TCG. A /dev/kvm that is
 * nested software virtualisation can fail exactly there (an emulation error, a hung guest), which
 * a boot of the real kernel finds and a look at /dev/kvm does not.
 */
async function probeAccelerator(kernel: string): Promise<Accelerator> {
  try {
    await (await open('/dev/kvm', 'r+')).close();
  } catch {
    return 'tcg';
  }
  const args = ['-M', 'microvm', '-accel', 'kvm', '-cpu', 'host', '-m', '128', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot'];
  try {
    const { stdout } = await execFileAsync('qemu-system-x86_64', [...args, '-kernel', kernel, '-append', 'console=ttyS0 panic=-1', '-serial', 'stdio'], {
      timeout: KVM_PROBE_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024,
    });
    return /Kernel panic - not syncing: VFS: Unable to mount root/.test(stdout) ? 'kvm' : 'tcg';
  } catch {
    return 'tcg';
  }
}

/** The TSC rate in kHz from /proc/cpuinfo's "cpu MHz"; undefined when it does not say. */
function hostTscKhz(): number | undefined {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function consoleTail(workDir: string): Promise<string> {
  const text = await readFile(join(workDir, 'console.log'), 'utf8').catch(() => '');
  return text.slice(-CONSOLE_TAIL).trim();
}
