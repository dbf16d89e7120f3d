/**
 * The bootable-commit convention (storage/README.md, "A bootable commit"): which file of a tree
 * is a VM's root disk, and the optional snapfork-vm.json beside it that says the VM's size and
 * kernel; with the server's caps on what a VM may ask for.
 */
import { unprocessable } from './errors.js';
import { DEFAULT_VM_SIZE } from './model.js';

/** The file of a tree that is its root disk: this name, else the tree's only other file than VM_CONFIG_FILE. */
export const ROOT_DISK_FILE = 'rootfs.img';
/** The optional file at a tree's root with `vcpu_count`, `mem_size_mib` and `kernel`. */
export const VM_CONFIG_FILE = 'snapfork-vm.json';
/** A larger VM_CONFIG_FILE is refused unread: three small fields need a few dozen bytes. */
export const MAX_VM_CONFIG_BYTES = 4096;
/**
 * Where a commit made from a running VM keeps its machine state, beside its root disk: the
 * runtime's `machine.json` ({format, vcpu_count, mem_size_mib}), the guest's RAM `memory.ram`
 * and its `device.state`. A VM of the commit resumes from them where the runtime's format is
 * the same, else boots the disk cold. A dataset VM's commit keeps its root disk here too
 * (`rootfs.img`: the base image as the VM left it), so that the dataset's own paths stay the
 * dataset's. Not part of the tree a VM or a dataset sees.
 */
export const MACHINE_STATE_DIR = '.snapfork-vm';
export const MACHINE_STATE_FILES = Object.freeze({
  machine: `${MACHINE_STATE_DIR}/machine.json`,
  memory: `${MACHINE_STATE_DIR}/memory.ram`,
  deviceState: `${MACHINE_STATE_DIR}/device.state`,
  rootDisk: `${MACHINE_STATE_DIR}/${ROOT_DISK_FILE}`,
});
/** A larger machine.json is not read: it holds three short fields. */
export const MAX_MACHINE_JSON_BYTES = 4096;

/** Whether a tree's entry is machine state (MACHINE_STATE_DIR or under it). */
export const isMachineState = (path: string): boolean => path === MACHINE_STATE_DIR || path.startsWith(`${MACHINE_STATE_DIR}/`);

/** The one kernel this server boots: its guest assets' `vmlinux` with `initrd.cpio`. */
export const DEFAULT_KERNEL = 'default.bin';

/**
 * The most a VM may ask for. TCG runs one host thread per vCPU, and a guest's memory is the
 * host's: these keep one VM from taking a small host whole.
 */
export const VM_LIMITS = Object.freeze({ maxVcpuCount: 4, minMemSizeMib: 128, maxMemSizeMib: 4096, maxFsSizeMib: 64 * 1024 });

export interface VmSize {
  vcpuCount: number;
  memSizeMib: number;
}

/** What a VM_CONFIG_FILE holds, every field defaulted. */
export interface VmConfig extends VmSize {
  kernel: string;
}

/**
 * The reason `size` is outside VM_LIMITS, or undefined when it is inside: the caller decides
 * whether that is a bad request or a bad commit.
 */
export function vmSizeProblem(size: { vcpuCount?: unknown; memSizeMib?: unknown }): string | undefined {
  const { maxVcpuCount, minMemSizeMib, maxMemSizeMib } = VM_LIMITS;
  if (size.vcpuCount !== undefined && !isIntegerIn(size.vcpuCount, 1, maxVcpuCount)) {
    return `vcpu_count must be an integer from 1 to ${maxVcpuCount}`;
  }
  if (size.memSizeMib !== undefined && !isIntegerIn(size.memSizeMib, minMemSizeMib, maxMemSizeMib)) {
    return `mem_size_mib must be an integer from ${minMemSizeMib} to ${maxMemSizeMib}`;
  }
  return undefined;
}

const isIntegerIn = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;

/**
 * Parses a VM_CONFIG_FILE: a JSON object with any of `vcpu_count`, `mem_size_mib` (within
 * VM_LIMITS) and `kernel` (DEFAULT_KERNEL) and nothing else; absent fields take the defaults.
 * `unprocessable`, naming the file and the fault, for anything else.
 */
export function parseVmConfig(bytes: Buffer): VmConfig {
  const fail = (why: string) => unprocessable(`${VM_CONFIG_FILE}: ${why}`);
  if (bytes.length > MAX_VM_CONFIG_BYTES) throw fail(`larger than ${MAX_VM_CONFIG_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw fail('not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('not a JSON object');
  const { vcpu_count: vcpuCount, mem_size_mib: memSizeMib, kernel, ...rest } = value as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw fail(`unknown field ${unknown[0]} (known: vcpu_count, mem_size_mib, kernel)`);
  const problem = vmSizeProblem({ vcpuCount, memSizeMib });
  if (problem) throw fail(problem);
  if (kernel !== undefined && kernel !== DEFAULT_KERNEL) throw fail(`kernel ${JSON.stringify(kernel)} not found: this server boots ${DEFAULT_KERNEL}`);
  return {
    vcpuCount: (vcpuCount as number | undefined) ?? DEFAULT_VM_SIZE.vcpuCount,
    memSizeMib: (memSizeMib as number | undefined) ?? DEFAULT_VM_SIZE.memSizeMib,
    kernel: DEFAULT_KERNEL,
  };
}

/** Bounds on a VM's labels (Vers' free-form `labels`), which every listing answers. */
export const LABEL_LIMITS = Object.freeze({ maxLabels: 32, maxKeyLength: 64, maxValueLength: 256 });

/** The reason `labels` are outside LABEL_LIMITS, or undefined. */
export function labelsProblem(labels: Readonly<Record<string, string>>): string | undefined {
  const { maxLabels, maxKeyLength, maxValueLength } = LABEL_LIMITS;
  const entries = Object.entries(labels);
  if (entries.length > maxLabels) return `at most ${maxLabels} labels`;
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > maxKeyLength) return `label names must have 1 to ${maxKeyLength} characters`;
    if (typeof value !== 'string' || value.length > maxValueLength) return `label ${key}: values are strings of at most ${maxValueLength} characters`;
  }
  return undefined;
}
