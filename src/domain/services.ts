import { AccessPolicy } from './access-policy.js';
import { AdminJobService } from './admin-job.service.js';
import { AccountService } from './account.service.js';
import { ForkService } from './fork.service.js';
import { GcService, type GcSettings } from './gc.service.js';
import { FsckService } from './fsck.service.js';
import { HealthService } from './health.service.js';
import { IdempotencyService } from './idempotency.service.js';
import { QuotaService } from './quota.service.js';
import { ReportingChunkStore } from './reporting-chunk-store.js';
import { RepositoryService } from './repository.service.js';
import { SnapshotService } from './snapshot.service.js';
import { StorageStatsService } from './storage-stats.service.js';
import { TransferService, UPLOAD_GRACE_MS } from './transfer.service.js';
import { BootPlanner } from './boot-planner.js';
import { SystemImageService } from './system-image.service.js';
import { VmGuestService } from './vm-guest.service.js';
import { VmService, type VmCaps } from './vm.service.js';
import type { BaseImageSource, DatasetImages } from './ports/vm-images.js';
import type { ExecLogStore } from './ports/exec-log.js';
import { noTelemetry, type Telemetry } from './ports/telemetry.js';
import type { VmRuntime } from './ports/vm-runtime.js';
import type { QuotaLimits } from './model.js';
import type { ChunkStore, MetadataStore } from '../store/types.js';

export interface Services {
  policy: AccessPolicy;
  accounts: AccountService;
  repositories: RepositoryService;
  snapshots: SnapshotService;
  transfers: TransferService;
  forks: ForkService;
  idempotency: IdempotencyService;
  images: SystemImageService;
  vms: VmService;
  vmGuests: VmGuestService;
  health: HealthService;
  gc: GcService;
  fsck: FsckService;
  stats: StorageStatsService;
  quotas: QuotaService;
  jobs: AdminJobService;
}

/** What VMs run on: the runtime, the guest assets' base image, the builder of dataset images, and the caps. */
export interface VmParts {
  runtime: VmRuntime;
  baseImage: BaseImageSource;
  datasets: DatasetImages;
  /** `maxDatasetBytes`: the most file content a dataset VM mounts at /data (413 beyond). */
  caps: VmCaps & { readonly maxDatasetBytes: number };
  /** Where each VM's exec output is logged. */
  execLogs: ExecLogStore;
  /** This server's id, recorded on the VMs it runs: servers sharing a database drive only their own. */
  host: string;
}

const NO_QUOTAS: QuotaLimits = { bytes: null, repositories: null, runningVms: null };

const DEFAULT_GC_SETTINGS: GcSettings = { graceMs: UPLOAD_GRACE_MS, deletedRetentionMs: 7 * 24 * 60 * 60 * 1000 };

export interface ServiceOptions {
  /** The clock, as ISO 8601 strings. */
  now?: () => string;
  /** Where forks, chunk writes and fsck results are reported; nowhere by default. */
  telemetry?: Telemetry;
  /** Garbage collection's grace and retention; the upload grace and 7 days by default. */
  gc?: GcSettings;
  /** Every namespace's quota unless its own is set; none by default. */
  quotas?: QuotaLimits;
}

/** Wires the domain services over a metadata store, a chunk store and what VMs run on. */
export function createServices(
  store: MetadataStore,
  storedChunks: ChunkStore,
  vms: VmParts,
  { now = () => new Date().toISOString(), telemetry = noTelemetry, gc = DEFAULT_GC_SETTINGS, quotas: defaultQuotas = NO_QUOTAS }: ServiceOptions = {},
): Services {
  const chunks = new ReportingChunkStore(storedChunks, telemetry);
  const policy = new AccessPolicy(store);
  const accounts = new AccountService(store, policy);
  const quotas = new QuotaService(store, policy, defaultQuotas);
  const repositories = new RepositoryService(store, policy, quotas);
  const snapshots = new SnapshotService(store, chunks, policy, repositories, quotas, now);
  const images = new SystemImageService(store, chunks, repositories, snapshots, vms.baseImage);
  const planner = new BootPlanner(chunks, images, vms.datasets, vms.caps);
  const gcService = new GcService(store, storedChunks, policy, telemetry, gc, () => Date.parse(now()));
  const fsck = new FsckService(store, storedChunks, policy, telemetry, now);
  const vmService = new VmService(store, chunks, policy, accounts, repositories, snapshots, images, planner, vms.runtime, vms.caps, quotas, vms.host, now);
  return {
    policy,
    accounts,
    repositories,
    snapshots,
    transfers: new TransferService(store, chunks, policy, repositories, snapshots, quotas, now),
    forks: new ForkService(store, policy, accounts, repositories, quotas, telemetry, now),
    idempotency: new IdempotencyService(store),
    images,
    vms: vmService,
    vmGuests: new VmGuestService(vmService, vms.execLogs, now),
    health: new HealthService(store, storedChunks),
    gc: gcService,
    fsck,
    stats: new StorageStatsService(store, storedChunks, policy, repositories),
    quotas,
    jobs: new AdminJobService(store, policy, gcService, fsck, vms.host, now),
  };
}
