/**
 * What a commit boots as (storage/README.md, "A bootable commit"): its own root disk sized by its
 * snapfork-vm.json, or, for a dataset (a tree without a root disk), the default base image with
 * the tree mounted read-only at /data; for a dataset VM's commit, the root disk it saved in its
 * machine state with the tree at /data again.
 */
import { ChunkDiskSource } from './disk-source.js';
import { tooLarge, unprocessable } from './errors.js';
import { buildManifest } from './manifest.js';
import { DEFAULT_VM_SIZE, type Manifest, type ManifestEntry } from './model.js';
import type { DatasetImages } from './ports/vm-images.js';
import type { DiskSource, ImageFile, SavedMachine } from './ports/vm-runtime.js';
import { DEFAULT_IMAGE, type SystemImageService } from './system-image.service.js';
import {
  isMachineState,
  MACHINE_STATE_FILES,
  MAX_MACHINE_JSON_BYTES,
  MAX_VM_CONFIG_BYTES,
  parseVmConfig,
  ROOT_DISK_FILE,
  VM_CONFIG_FILE,
  type VmSize,
} from './vm-config.js';
import type { ChunkStore } from '../store/types.js';

/** A dataset VM's image holds a file system entry per manifest entry; past this many, 413. */
export const MAX_DATASET_ENTRIES = 100_000;

/** ext4's superblock magic 0xEF53, little-endian at byte 56 of the superblock (which starts at 1024). */
const EXT4_MAGIC_OFFSET = 1024 + 56;
const EXT4_MAGIC = Buffer.from([0x53, 0xef]);

export interface BootPlan {
  /** The VM's size: its commit's snapfork-vm.json, else the defaults. */
  size: VmSize;
  /**
   * The commit's own root disk (a dataset VM's commit: the one saved in its machine state);
   * undefined for a dataset, whose base image disks() resolves.
   */
  rootDisk?: ManifestEntry;
  /** The machine state a commit made from a running VM holds (MACHINE_STATE_FILES), to resume. */
  saved?: SavedMachine;
  /**
   * The VM's disks, resolved once per plan (the VMs of one plan share them). May take a while:
   * it imports the base image, or builds a dataset's image, when needed.
   */
  disks(): Promise<VmDisks>;
}

export interface VmDisks {
  disk: DiskSource;
  dataDisk?: ImageFile;
  /**
   * The tree entry whose bytes `disk` reads, at the path where a commit of the VM keeps its root
   * disk: the commit's own root disk, or for a dataset's VM the base image's, moved to
   * MACHINE_STATE_FILES.rootDisk so that the dataset's paths stay its own.
   */
  rootDisk: ManifestEntry;
}

export class BootPlanner {
  constructor(
    private readonly chunks: ChunkStore,
    private readonly images: SystemImageService,
    private readonly datasets: DatasetImages,
    private readonly limits: { readonly maxDatasetBytes: number },
  ) {}

  /**
   * How a tree boots. Its root disk is ROOT_DISK_FILE, else its only file besides VM_CONFIG_FILE,
   * when that file is an ext4 image. `unprocessable` when ROOT_DISK_FILE or a VM_CONFIG_FILE is
   * there but no ext4 root disk, or the config is bad (parseVmConfig). Any other tree is a
   * dataset (its entries outside MACHINE_STATE_DIR): `too_large` past `maxDatasetBytes` of file
   * content or MAX_DATASET_ENTRIES entries. A dataset with MACHINE_STATE_FILES.rootDisk (a dataset
   * VM's commit) boots that disk, or resumes its saved machine, with the dataset at /data;
   * `unprocessable` when that file is no ext4 image. Reads only the config and two bytes of the
   * disk; the expensive work waits for disks().
   */
  async plan(manifest: Manifest): Promise<BootPlan> {
    const files = manifest.entries.filter((e) => e.type === 'file' && !isMachineState(e.path));
    const configFile = files.find((e) => e.path === VM_CONFIG_FILE);
    const others = files.filter((e) => e !== configFile);
    const candidate = others.find((e) => e.path === ROOT_DISK_FILE) ?? (others.length === 1 ? others[0] : undefined);
    const disk = candidate && new ChunkDiskSource(candidate, this.chunks);
    if (candidate && disk && (await isExt4(disk))) {
      const size = configFile ? parseVmConfig(await this.readConfig(configFile)) : DEFAULT_VM_SIZE;
      const saved = await this.savedMachine(manifest);
      return {
        size: saved ? savedSize(saved) : { vcpuCount: size.vcpuCount, memSizeMib: size.memSizeMib },
        rootDisk: candidate,
        ...(saved && { saved }),
        disks: once(async () => ({ disk, rootDisk: candidate })),
      };
    }
    if (configFile || candidate?.path === ROOT_DISK_FILE) {
      throw unprocessable(candidate ? `commit holds no bootable disk: ${candidate.path} is not an ext4 image` : 'commit holds no bootable disk');
    }
    // Its own digest: the image of a dataset is shared by the commits of its VMs.
    const dataset = buildManifest(manifest.entries.filter((e) => !isMachineState(e.path)));
    const savedDisk = manifest.entries.find((e) => e.path === MACHINE_STATE_FILES.rootDisk && e.type === 'file');
    if (!savedDisk) return this.datasetPlan(dataset);
    if (!(await isExt4(new ChunkDiskSource(savedDisk, this.chunks, { cacheBytes: 0 })))) throw unprocessable(`commit holds no bootable disk: ${savedDisk.path} is not an ext4 image`);
    return this.datasetPlan(dataset, { rootDisk: savedDisk, saved: await this.savedMachine(manifest) });
  }

  /**
   * A dataset's VM: `own`, a dataset VM's commit, holds the root disk (and maybe the machine)
   * the VM saved; else it boots the base image.
   */
  private datasetPlan(dataset: Manifest, own?: { rootDisk: ManifestEntry; saved: SavedMachine | undefined }): BootPlan {
    const bytes = dataset.entries.reduce((sum, e) => sum + e.size, 0);
    if (bytes > this.limits.maxDatasetBytes) {
      throw tooLarge(`a dataset of ${bytes} bytes is more than the ${this.limits.maxDatasetBytes} a VM mounts at /data`);
    }
    if (dataset.entries.length > MAX_DATASET_ENTRIES) {
      throw tooLarge(`a dataset of ${dataset.entries.length} entries is more than the ${MAX_DATASET_ENTRIES} a VM mounts at /data`);
    }
    const dataDisk = () => this.datasets.imageOf(dataset, (file) => this.chunks.stream(file.chunks.map((c) => c.digest)));
    if (own) {
      const { rootDisk, saved } = own;
      return {
        size: saved ? savedSize(saved) : { ...DEFAULT_VM_SIZE },
        rootDisk,
        ...(saved && { saved }),
        disks: once(async () => ({ disk: new ChunkDiskSource(rootDisk, this.chunks), dataDisk: await dataDisk(), rootDisk })),
      };
    }
    return {
      // The base image's own size: its snapfork-vm.json names the kernel only.
      size: { ...DEFAULT_VM_SIZE },
      disks: once(async () => {
        const base = await (await this.plan((await this.images.image(DEFAULT_IMAGE)).manifest)).disks();
        return { disk: base.disk, dataDisk: await dataDisk(), rootDisk: { ...base.rootDisk, path: MACHINE_STATE_FILES.rootDisk } };
      }),
    };
  }

  /**
   * The machine state of MACHINE_STATE_FILES when the tree holds all three and a readable
   * machine.json; otherwise none (the disk then boots cold: a state is an optimisation).
   */
  private async savedMachine(manifest: Manifest): Promise<SavedMachine | undefined> {
    const file = (path: string) => manifest.entries.find((e) => e.path === path && e.type === 'file');
    const machine = file(MACHINE_STATE_FILES.machine);
    const memory = file(MACHINE_STATE_FILES.memory);
    const deviceState = file(MACHINE_STATE_FILES.deviceState);
    if (!machine || !memory || !deviceState || machine.size > MAX_MACHINE_JSON_BYTES) return undefined;
    try {
      const fields = JSON.parse((await new ChunkDiskSource(machine, this.chunks, { cacheBytes: 0 }).read(0, machine.size)).toString('utf8')) as Record<string, unknown>;
      const { format, vcpu_count: vcpuCount, mem_size_mib: memSizeMib } = fields;
      if (typeof format !== 'string' || typeof vcpuCount !== 'number' || typeof memSizeMib !== 'number') return undefined;
      if (memory.size !== memSizeMib * 1024 * 1024) return undefined;
      return { format, vcpuCount, memSizeMib, memory: new ChunkDiskSource(memory, this.chunks), deviceState: new ChunkDiskSource(deviceState, this.chunks) };
    } catch {
      return undefined;
    }
  }

  private async readConfig(file: ManifestEntry): Promise<Buffer> {
    if (file.size > MAX_VM_CONFIG_BYTES) throw unprocessable(`${VM_CONFIG_FILE}: larger than ${MAX_VM_CONFIG_BYTES} bytes`);
    return new ChunkDiskSource(file, this.chunks, { cacheBytes: 0 }).read(0, file.size);
  }
}

/** Whether a disk holds an ext4 file system (its superblock's magic). */
async function isExt4(disk: DiskSource): Promise<boolean> {
  if (disk.size < EXT4_MAGIC_OFFSET + EXT4_MAGIC.length) return false;
  return (await disk.read(EXT4_MAGIC_OFFSET, EXT4_MAGIC.length)).equals(EXT4_MAGIC);
}

/** A saved machine resumes at the size it was saved with. */
const savedSize = (saved: SavedMachine): VmSize => ({ vcpuCount: saved.vcpuCount, memSizeMib: saved.memSizeMib });

/** `work` run on the first call only; later calls share its promise (a failure too). */
function once<T>(work: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= work());
}
