import { AccessPolicy } from './access-policy.js';
import { AccountService } from './account.service.js';
import { ForkService } from './fork.service.js';
import { IdempotencyService } from './idempotency.service.js';
import { RepositoryService } from './repository.service.js';
import { SnapshotService } from './snapshot.service.js';
import { TransferService } from './transfer.service.js';
import { VmGuestService } from './vm-guest.service.js';
import { VmService, type VmCaps } from './vm.service.js';
import type { ExecLogStore } from './ports/exec-log.js';
import type { VmRuntime } from './ports/vm-runtime.js';
import type { ChunkStore, MetadataStore } from '../store/types.js';

export interface Services {
  policy: AccessPolicy;
  accounts: AccountService;
  repositories: RepositoryService;
  snapshots: SnapshotService;
  transfers: TransferService;
  forks: ForkService;
  idempotency: IdempotencyService;
  vms: VmService;
  vmGuests: VmGuestService;
}

/** Wires the domain services over a metadata store, a chunk store, a VM runtime and the VMs' exec logs. */
export function createServices(
  store: MetadataStore,
  chunks: ChunkStore,
  vms: { runtime: VmRuntime; caps: VmCaps; execLogs: ExecLogStore },
  now: () => string = () => new Date().toISOString(),
): Services {
  const policy = new AccessPolicy(store);
  const accounts = new AccountService(store, policy);
  const repositories = new RepositoryService(store, policy);
  const snapshots = new SnapshotService(store, chunks, policy, repositories, now);
  const vmService = new VmService(store, chunks, policy, accounts, snapshots, vms.runtime, vms.caps, now);
  return {
    policy,
    accounts,
    repositories,
    snapshots,
    transfers: new TransferService(store, chunks, policy, repositories, snapshots, now),
    forks: new ForkService(store, policy, accounts, repositories, now),
    idempotency: new IdempotencyService(store),
    vms: vmService,
    vmGuests: new VmGuestService(vmService, vms.execLogs, now),
  };
}
