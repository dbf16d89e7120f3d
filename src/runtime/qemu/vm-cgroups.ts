/**
 * Memory and CPU limits per VM process, through Linux control groups: each VM's QEMU in a group of
 * its own, under a parent group of its runtime, itself under the group the server runs in (so
 * that VMs stay inside whatever limits the server was given):
 *
 * ```
 * cgroup v2 (/sys/fs/cgroup/cgroup.controllers):
 *   /sys/fs/cgroup/<server's group>/snapfork/<runtime key>/<vm id>/   memory.max, cpu.max, cgroup.procs
 * cgroup v1 (the memory and cpu hierarchies):
 *   /sys/fs/cgroup/memory/<server's group>/snapfork/<runtime key>/<vm id>/   memory.limit_in_bytes
 *   /sys/fs/cgroup/cpu/<server's group>/snapfork/<runtime key>/<vm id>/      cpu.cfs_quota_us, cpu.cfs_period_us
 * ```
 *
 * The runtime key names one runtime directory, so servers of one host never touch each other's
 * groups. A VM's group goes when the VM ends, and the runtime's and `snapfork` when they hold no
 * group any more; the groups a killed server left are swept (their processes killed) by the next
 * open of the same runtime directory.
 */
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What QEMU itself needs beside the guest's RAM, in MiB: its heap, device emulation, the qcow2
 * and block caches and under TCG the translated code, which grows with the code the guest runs.
 * Measured under TCG, 2 vCPUs, 256 MiB and 1 GiB guests booted, writing 150 MiB and reading
 * 3,000 files: 85-90 MiB of QEMU's own anonymous memory, beside its binary and libraries (88 MiB
 * of file pages) and the overlay's page cache, which the kernel reclaims at the limit. Twice
 * that leaves room for a guest that runs more code than ours.
 */
export const QEMU_MEMORY_OVERHEAD_MIB = 256;
/** The CFS period the CPU quota is a multiple of: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000;
/** The parent group of every runtime's groups, under the server's own group. */
export const CGROUP_PARENT = 'snapfork';

/** What a VM may use: its guest RAM plus QEMU's overhead, and one core per vCPU. */
export interface VmLimits {
  readonly memoryBytes: number;
  /** CPU time per CPU_PERIOD_US, in microseconds. */
  readonly cpuQuotaUs: number;
}

/** The limits of a VM of `memSizeMib` MiB of RAM and `vcpuCount` vCPUs. */
export function vmLimits(memSizeMib: number, vcpuCount: number): VmLimits {
  return { memoryBytes: (memSizeMib + QEMU_MEMORY_OVERHEAD_MIB) * 1024 * 1024, cpuQuotaUs: vcpuCount * CPU_PERIOD_US };
}

/** Where a message about the groups goes (the server's pino logger fits). */
export interface CgroupLog {
  warn(fields: object, message: string): void;
}

/** One hierarchy a VM's group lives in, with how its limits are written there. */
interface Hierarchy {
  /** The runtime's group: <mount>/<server's group>/snapfork/<key>. */
  readonly dir: string;
  /** Makes `dir`, and the groups between it and the server's, ready to hold VM groups. */
  prepare(): Promise<void>;
  /** The files and values that set `limits` in a VM's group of this hierarchy. */
  limitFiles(limits: VmLimits): [file: string, value: string][];
}

const CONTROLLERS = ['memory', 'cpu'] as const;
/** How often making a group is tried when another runtime removed its parent meanwhile. */
const MAKE_ATTEMPTS = 3;

/** A VM's group, created with its limits, before its process exists. */
export class VmCgroup {
  constructor(
    private readonly dirs: readonly string[],
    private readonly log: CgroupLog,
    private readonly vmId: string,
    /** Removes the runtime's groups above when they hold no VM group any more. */
    private readonly prune: () => Promise<void>,
  ) {}

  /**
   * Moves the process `pid` (all its threads) into the group. Synchronous, so that it runs right
   * after the spawn, before QEMU has touched the guest's memory. A failure is logged, never
   * thrown: the VM then runs without its limits rather than not at all.
   */
  adopt(pid: number): void {
    for (const dir of this.dirs) {
      try {
        writeFileSync(join(dir, 'cgroup.procs'), `${pid}\n`);
      } catch (error) {
        this.log.warn({ err: error, vm_id: this.vmId, cgroup: dir }, 'VM process runs without its memory and CPU limits');
      }
    }
  }

  /** Removes the group once its processes have ended. Idempotent; failures are logged. */
  async remove(): Promise<void> {
    await Promise.all(this.dirs.map((dir) => removeGroup(dir).catch((error: unknown) => this.log.warn({ err: error, cgroup: dir }, 'VM cgroup not removed'))));
    await this.prune();
  }
}

/**
 * The groups of one runtime directory's VMs. The runtime's group exists while it has VMs (made
 * with the first, removed with the last), so that a server killed while it ran none leaves
 * nothing behind.
 */
export class VmCgroups {
  private constructor(
    private readonly hierarchies: readonly Hierarchy[],
    private readonly log: CgroupLog,
  ) {}

  /**
   * The groups of the runtime `key`, under the server's own group of the cgroup file system at
   * `root` (v2 where `root` holds cgroup.controllers, else v1's memory and cpu hierarchies). What
   * a previous server of the same key left is swept: the processes in its groups killed, the
   * groups removed. Rejects, saying why, where the groups cannot be made (no cgroup file system,
   * a controller missing, not writable), which it tries: the caller runs without them.
   */
  static async open(key: string, log: CgroupLog, root = '/sys/fs/cgroup'): Promise<VmCgroups> {
    const own = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8'));
    const hierarchies = (await exists(join(root, 'cgroup.controllers'))) ? await unified(root, own, key) : await legacy(root, own, key);
    const groups = new VmCgroups(hierarchies, log);
    await groups.sweep();
    await groups.made(async () => {
      for (const hierarchy of hierarchies) await hierarchy.prepare();
    });
    await groups.prune();
    return groups;
  }

  /** Creates the group of VM `vmId` with `limits` (see VmCgroup.adopt for its process). */
  async create(vmId: string, limits: VmLimits): Promise<VmCgroup> {
    const dirs = await this.made(async () => {
      const made: string[] = [];
      try {
        for (const hierarchy of this.hierarchies) {
          await hierarchy.prepare();
          const dir = join(hierarchy.dir, vmId);
          await mkdir(dir);
          made.push(dir);
          for (const [file, value] of hierarchy.limitFiles(limits)) await writeFile(join(dir, file), value);
        }
        return made;
      } catch (error) {
        await Promise.all(made.map((dir) => removeGroup(dir).catch(() => undefined)));
        throw error;
      }
    });
    return new VmCgroup(dirs, this.log, vmId, () => this.prune());
  }

  /** Removes the runtime's groups (its VMs ended first). */
  async close(): Promise<void> {
    await this.sweep();
    await this.prune();
  }

  /** Kills what runs in the runtime's VM groups and removes them. */
  private async sweep(): Promise<void> {
    for (const { dir } of this.hierarchies) {
      const entries = await readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return [];
        throw error;
      });
      for (const entry of entries) {
        if (!entry.isDirectory()) continue;
        const group = join(dir, entry.name);
        for (const pid of (await readFile(join(group, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
          }
        }
        await removeGroup(group);
      }
    }
  }

  /**
   * Removes the runtime's group and the shared parent where they hold no group: a group with
   * children refuses (EBUSY), and that is the answer.
   */
  private async prune(): Promise<void> {
    for (const { dir } of this.hierarchies) {
      for (const group of [dir, dirname(dir)]) await rmdir(group).catch(() => undefined);
    }
  }

  /**
   * `make`, again when it fails with ENOENT: the last VM group of this runtime, or another
   * runtime's, may have pruned a parent between its making and its use.
   */
  private async made<T>(make: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await make();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === MAKE_ATTEMPTS) throw error;
      }
    }
  }
}

/** The server's own group in each hierarchy of /proc/self/cgroup: v1 by controller, v2 as "". */
export function parseProcCgroup(text: string): Map<string, string> {
  const groups = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1]!.split(',')) groups.set(controller, match[2]!);
  }
  return groups;
}

async function unified(root: string, own: Map<string, string>, key: string): Promise<Hierarchy[]> {
  const path = own.get('');
  if (path === undefined) throw new Error('/proc/self/cgroup names no cgroup v2 group');
  const base = join(root, path);
  if (!(await exists(base))) throw new Error(`the server's cgroup ${base} is not in ${root}`);
  const available = (await readFile(join(base, 'cgroup.controllers'), 'utf8')).split(/\s+/);
  const missing = CONTROLLERS.filter((c) => !available.includes(c));
  if (missing.length > 0) throw new Error(`the ${missing.join(' and ')} controller is not available in ${base}`);
  const dir = join(base, CGROUP_PARENT, key);
  return [
    {
      dir,
      // v2 limits a group through the controllers its parent enables for its children: each level
      // from the server's group down enables them (refused, EBUSY, where the server's group holds
      // processes and is not the root: a group with processes cannot delegate).
      prepare: async () => {
        for (const level of [base, dirname(dir), dir]) {
          await mkdir(level, { recursive: true });
          await writeFile(join(level, 'cgroup.subtree_control'), CONTROLLERS.map((c) => `+${c}`).join(' '));
        }
      },
      limitFiles: ({ memoryBytes, cpuQuotaUs }) => [
        ['memory.max', String(memoryBytes)],
        ['cpu.max', `${cpuQuotaUs} ${CPU_PERIOD_US}`],
      ],
    },
  ];
}

async function legacy(root: string, own: Map<string, string>, key: string): Promise<Hierarchy[]> {
  const limitFiles: Record<(typeof CONTROLLERS)[number], Hierarchy['limitFiles']> = {
    memory: ({ memoryBytes }) => [['memory.limit_in_bytes', String(memoryBytes)]],
    // The period first: a quota is checked against the period in place.
    cpu: ({ cpuQuotaUs }) => [
      ['cpu.cfs_period_us', String(CPU_PERIOD_US)],
      ['cpu.cfs_quota_us', String(cpuQuotaUs)],
    ],
  };
  const hierarchies: Hierarchy[] = [];
  for (const controller of CONTROLLERS) {
    const path = own.get(controller);
    const mount = join(root, controller);
    if (path === undefined || !(await exists(join(mount, 'cgroup.procs')))) throw new Error(`no cgroup v1 ${controller} hierarchy at ${mount}`);
    const base = join(mount, path);
    if (!(await exists(base))) throw new Error(`the server's cgroup ${base} is not in ${mount}`);
    const dir = join(base, CGROUP_PARENT, key);
    hierarchies.push({ dir, prepare: async () => void (await mkdir(dir, { recursive: true })), limitFiles: limitFiles[controller] });
  }
  return hierarchies;
}

/**
 * Removes an empty group. A process that was just killed may still be leaving it (EBUSY) for a
 * moment: tried again a few times.
 */
async function removeGroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const { code } = error as NodeJS.ErrnoException;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 40) throw error;
      await sleep(25);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
