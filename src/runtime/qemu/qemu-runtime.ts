/**
 * VmRuntime on QEMU microVMs: one `qemu-system-x86_64 -M microvm` process per VM, booting the
 * guest assets of scripts/vm/build-guest.sh directly (uncompressed `vmlinux`, `initrd.cpio`),
 * its root disk a qcow2 overlay over the spec's disk, exec through qemu-guest-agent.
 *
 * Each VM has a work directory under the runtime directory:
 *
 * ```
 * <runtimeDir>/
 * └── <vm id>/            removed by stop(), or by the next open() after a server crash
 *     ├── qemu.pid        the QEMU process id, which is also its process group id
 *     ├── disk.sock       where the base disk is served (NBD), the overlay's backing
 *     ├── overlay.qcow2   everything the VM writes; the base disk is never written
 *     ├── qmp.sock        QMP: stop, cont, and the STOP/RESUME/SHUTDOWN events
 *     ├── qga.sock        the guest agent's virtio-serial port org.qemu.guest_agent.0
 *     └── console.log     the serial console (and QEMU's own messages), its first 1 MiB
 * ```
 *
 * No VM outlives its server: close() stops them all, a process 'exit' handler kills what is
 * left, and after a crash (when no handler ran) the next server's open() kills every QEMU still
 * running in a leftover work directory and removes it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import { conflict, invalid } from '../../domain/errors.js';
import type {
  ExecRequest,
  ExecResult,
  ExecStream,
  RunningVm,
  RuntimeVmState,
  VmRuntime,
  VmSpec,
  WriteFileOptions,
} from '../../domain/ports/vm-runtime.js';
import type { DiskBacking, ExportDisk } from './disk-export.js';
import { connectWhenListening } from './json-lines.js';
import { QgaClient } from './qga-client.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';

export interface QemuRuntimeOptions {
  /** Holds one work directory per VM (layout above); created when missing. */
  readonly runtimeDir: string;
  /** Holds `vmlinux` and `initrd.cpio` (SNAPFORK_VM_ASSETS, built by scripts/vm/build-guest.sh). */
  readonly assetsDir: string;
  /** Serves each VM's base disk to QEMU (the NBD server of src/runtime/nbd/). */
  readonly exportDisk: ExportDisk;
  /** How long a boot may take, from spawning QEMU to the guest agent's answer. Default 60 s. */
  readonly bootTimeoutMs?: number;
  /** How long one guest agent command may go unanswered before the guest is taken to hang. Default 30 s. */
  readonly agentTimeoutMs?: number;
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

/** Whether the sockets of every VM's work directory under `runtimeDir` fit a Unix socket path. */
export function holdsSocketPaths(runtimeDir: string): boolean {
  return Buffer.byteLength(join(resolve(runtimeDir), '00000000-0000-0000-0000-000000000000', 'disk.sock')) <= MAX_SOCKET_PATH;
}

export class QemuRuntime implements VmRuntime {
  private readonly vms = new Set<QemuVm>();
  private readonly runtimeDir: string;
  private readonly assetsDir: string;
  private readonly bootTimeoutMs: number;
  private readonly agentTimeoutMs: number;
  /** TCG's TSC ticks at the host's rate; telling the kernel spares a calibration that can hang. */
  private readonly tscKhz = hostTscKhz();
  private closed = false;
  private readonly killAllOnExit = () => {
    for (const vm of this.vms) vm.killAtExit();
  };

  /**
   * A runtime over `options.runtimeDir`, which it owns alone (one server per directory): what a
   * previous server left there is killed and removed first.
   */
  static async open(options: QemuRuntimeOptions): Promise<QemuRuntime> {
    const runtime = new QemuRuntime(options);
    try {
      await runtime.sweepLeftovers();
    } catch (error) {
      await runtime.close();
      throw error;
    }
    return runtime;
  }

  private constructor(private readonly options: QemuRuntimeOptions) {
    // Absolute: QEMU runs in the work directory, and a leftover QEMU is recognised by its cwd.
    this.runtimeDir = resolve(options.runtimeDir);
    this.assetsDir = resolve(options.assetsDir);
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
    const kernel = join(this.assetsDir, 'vmlinux');
    const initrd = join(this.assetsDir, 'initrd.cpio');
    await assertReadable([kernel, initrd], this.assetsDir);
    const workDir = join(this.runtimeDir, spec.id);
    try {
      await mkdir(workDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw conflict(`VM ${spec.id} is already running`);
      throw error;
    }
    let backing: DiskBacking | undefined;
    let vm: QemuVm | undefined;
    try {
      backing = await this.options.exportDisk(spec.disk, join(workDir, 'disk.sock'));
      const overlay = join(workDir, 'overlay.qcow2');
      await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', backing.filename, overlay], { timeout: 30_000 });
      const args = qemuArgs(spec, { workDir, kernel, initrd, overlay, tscKhz: this.tscKhz });
      vm = new QemuVm(spec.id, workDir, backing, args, this.agentTimeoutMs, () => this.vms.delete(vm!));
      this.vms.add(vm);
      await vm.boot(Date.now() + this.bootTimeoutMs);
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
        await backing?.close();
        await rm(workDir, { recursive: true, force: true });
      }
      throw new Error(`VM ${spec.id} did not boot: ${reason}${consoleText && `\n--- console ---\n${consoleText}`}`, { cause: error });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.vms].map((vm) => vm.stop()));
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
  }
}

/** One VM: its QEMU process, QMP and guest agent connections, and work directory. */
export class QemuVm implements RunningVm {
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly exited: Promise<void>;
  private qmp: QmpClient | undefined;
  private qga: QgaClient | undefined;
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

  constructor(
    readonly id: string,
    /** The VM's work directory (layout in this module's comment). */
    readonly workDir: string,
    private readonly backing: DiskBacking,
    args: string[],
    private readonly agentTimeoutMs: number,
    private readonly forget: () => void,
  ) {
    // detached: its own process group, so that one kill ends QEMU and anything it started.
    this.child = spawn('qemu-system-x86_64', args, { cwd: workDir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.killedBySignal = signal !== null;
        resolve(this.onProcessExit(signal !== null ? `was killed by ${signal}` : `exited with code ${code}`));
      });
      // A spawn that fails (no QEMU installed) emits 'error', and maybe no 'exit'.
      this.child.once('error', (error) => this.child.pid === undefined && resolve(this.onProcessExit(`could not be started: ${error.message}`)));
    });
    if (this.child.pid !== undefined) writeFileSync(join(workDir, 'qemu.pid'), `${this.child.pid}\n`);
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
    if (!this.qga) return 'booting';
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
   * Connects QMP and the guest agent, and waits until the agent answers guest-ping. On failure
   * the caller halts the VM: the process may still run.
   */
  async boot(deadline: number): Promise<void> {
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
      const qgaSocket = await connectWhenListening(join(this.workDir, 'qga.sock'), deadline, gaveUp);
      const qga = new QgaClient(qgaSocket, this.agentTimeoutMs);
      await qga.waitReady(deadline, gaveUp);
      this.qga = qga;
    } catch (error) {
      if (late) throw new Error('the guest agent did not answer within the boot limit', { cause: error });
      throw error;
    } finally {
      clearTimeout(limit);
    }
  }

  async pause(): Promise<void> {
    await this.control('stop');
    this.paused = true;
  }

  async resume(): Promise<void> {
    await this.control('cont');
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

  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      await this.halt();
      await this.backing.close();
      await rm(this.workDir, { recursive: true, force: true });
      this.forget();
    })());
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
    if (state !== 'running' || !this.qga) throw conflict(`VM ${this.id} is ${state}, not running`);
    try {
      return await work(this.qga, () => this.untilRunning());
    } catch (error) {
      this.rethrowEnded(error);
    }
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
  paths: { workDir: string; kernel: string; initrd: string; overlay: string; tscKhz: number | undefined },
): string[] {
  const cmdline = [
    'console=ttyS0 quiet panic=-1',
    ...(paths.tscKhz ? [`tsc_early_khz=${paths.tscKhz}`] : []),
    'tsc=reliable cryptomgr.notests rodata=off',
    `snapfork.hostname=${spec.identity.hostname}`,
    `snapfork.machine_id=${spec.identity.machineId}`,
  ].join(' ');
  const socket = (name: string) => `socket,id=${name},path=${join(paths.workDir, `${name}.sock`)},server=on,wait=off`;
  // KVM is not used: where it exists here it is nested software virtualisation that fails (issue 12).
  return [
    ...['-M', 'microvm', '-accel', 'tcg', '-cpu', 'qemu64'],
    ...['-m', String(spec.memSizeMib), '-smp', String(spec.vcpuCount)],
    ...['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
    ...['-kernel', paths.kernel, '-initrd', paths.initrd, '-append', cmdline],
    ...['-drive', `id=root,if=none,format=qcow2,file=${paths.overlay}`, '-device', 'virtio-blk-device,drive=root'],
    ...['-device', 'virtio-serial-device', '-chardev', socket('qga'), '-device', 'virtserialport,chardev=qga,name=org.qemu.guest_agent.0'],
    ...['-chardev', socket('qmp'), '-mon', 'chardev=qmp,mode=control'],
    ...['-serial', 'stdio'],
  ];
}

/** Guest paths are absolute: the agent would resolve a relative one against its own directory. */
function assertAbsolute(path: string): void {
  if (!path.startsWith('/') || path.includes('\0')) throw invalid(`path "${path}" is not an absolute path (or holds a NUL)`);
}

function checkSpec(spec: VmSpec): void {
  // The id names a directory; the identity goes onto the kernel command line, split at spaces.
  if (!/^[0-9a-f-]{36}$/i.test(spec.id)) throw invalid(`VM id "${spec.id}" is not a UUID`);
  if (!Number.isSafeInteger(spec.vcpuCount) || spec.vcpuCount < 1) throw invalid(`vcpu count ${spec.vcpuCount} is not a positive integer`);
  if (!Number.isSafeInteger(spec.memSizeMib) || spec.memSizeMib < 16) throw invalid(`memory ${spec.memSizeMib} MiB is not an integer of at least 16`);
  if (!IDENTITY_HOSTNAME.test(spec.identity.hostname)) throw invalid(`hostname "${spec.identity.hostname}" is not a DNS label`);
  if (!IDENTITY_MACHINE_ID.test(spec.identity.machineId)) throw invalid(`machine-id "${spec.identity.machineId}" is not 32 lowercase hex digits`);
}

async function assertReadable(files: string[], assetsDir: string): Promise<void> {
  for (const file of files) {
    try {
      await (await open(file)).close();
    } catch {
      throw new Error(`the VM guest asset ${file} is missing: build the assets with scripts/vm/build-guest.sh (SNAPFORK_VM_ASSETS=${assetsDir})`);
    }
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
