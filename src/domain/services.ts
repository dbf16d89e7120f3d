import { AccessPolicy } from './access-policy.js';
import { AccountService } from './account.service.js';
import { ForkService } from './fork.service.js';
import { IdempotencyService } from './idempotency.service.js';
import { RepositoryService } from './repository.service.js';
import { SnapshotService } from './snapshot.service.js';
import { TransferService } from './transfer.service.js';
import type { ChunkStore, MetadataStore } from '../store/types.js';

export interface Services {
  policy: AccessPolicy;
  accounts: AccountService;
  repositories: RepositoryService;
  snapshots: SnapshotService;
  transfers: TransferService;
  forks: ForkService;
  idempotency: IdempotencyService;
}

/** Wires the domain services over a metadata store and a chunk store. */
export function createServices(
  store: MetadataStore,
  chunks: ChunkStore,
  now: () => string = () => new Date().toISOString(),
): Services {
  const policy = new AccessPolicy(store);
  const accounts = new AccountService(store, policy);
  const repositories = new RepositoryService(store, policy);
  const snapshots = new SnapshotService(store, chunks, policy, repositories, now);
  return {
    policy,
    accounts,
    repositories,
    snapshots,
    transfers: new TransferService(store, chunks, policy, repositories, snapshots, now),
    forks: new ForkService(store, policy, accounts, repositories, now),
    idempotency: new IdempotencyService(store),
  };
}
