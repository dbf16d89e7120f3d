/**
 * Quotas per namespace: bytes stored, live repositories, active VMs. Each limit is the
 * namespace's own (set by an administrator) or the server's default (SNAPFORK_QUOTA_*); null is
 * no limit. Checked before anything is written (a namespace at its storage quota has a push
 * refused before its body is read; a write stops as soon as the chunks it creates pass what is
 * left) and again where the write lands, in its transaction, so concurrent writers cannot pass
 * a limit together.
 *
 * Bytes are charged once per chunk, to the namespace whose commit first referenced it (see
 * QuotaStore): a fork costs nothing, and neither do chunks another namespace stored already.
 */
import { DomainError, notFound, tooMany } from './errors.js';
import type { Namespace, NamespaceQuota, QuotaLimits, Repository } from './model.js';
import type { AccessPolicy } from './access-policy.js';
import { SYSTEM_NAMESPACE } from './system-image.service.js';
import type { Principal } from './principal.js';
import type { ChunkWriter, MetadataStore, PutOptions, PutResult, QuotaStore } from '../store/types.js';
import type { EncodedChunk } from '../lib/chunk-codec.js';

export interface QuotaReport {
  namespace: Namespace;
  /** The limits that apply: the namespace's own where set, else the server's defaults. */
  limits: QuotaLimits;
  /** The namespace's own limits (null: the default applies). */
  overrides: QuotaLimits;
  usage: { bytes: number; repositories: number; runningVms: number };
}

const NO_LIMITS: QuotaLimits = { bytes: null, repositories: null, runningVms: null };

/** A namespace's storage quota is used up: 507, as WebDAV answers a quota (RFC 4918 §11.5). */
function storageQuotaExceeded(namespace: string, limit: number, stored: number): DomainError {
  return new DomainError(
    'insufficient_storage',
    `namespace ${namespace} is over its storage quota: ${stored} of ${limit} bytes stored; delete data or ask an administrator to raise the quota`,
    { quota: 'bytes', limit, used: stored },
  );
}

export class QuotaService {
  constructor(
    private readonly store: MetadataStore,
    private readonly policy: AccessPolicy,
    private readonly defaults: QuotaLimits,
  ) {}

  /** The quota of a namespace with what counts against it: for its members and administrators; `not_found` for anyone else. */
  async report(principal: Principal, namespaceName: string): Promise<QuotaReport> {
    const namespace = await this.store.getNamespace(namespaceName);
    const user = this.policy.requireUser(principal);
    const allowed = namespace !== undefined && (user.scopes.has('admin') || (await this.policy.roleIn(user, namespace.id)) !== undefined);
    if (!allowed) throw notFound(`namespace ${namespaceName} not found`);
    return this.reportOf(namespace, await this.store.getQuota(namespace.id));
  }

  /** Sets a namespace's own limits (null: back to the default); administrators only. */
  async set(principal: Principal, namespaceName: string, limits: Partial<QuotaLimits>): Promise<QuotaReport> {
    this.policy.requireScope(principal, 'admin');
    const namespace = await this.store.getNamespace(namespaceName);
    if (!namespace) throw notFound(`namespace ${namespaceName} not found`);
    return this.reportOf(namespace, await this.store.setQuota(namespace.id, limits));
  }

  /**
   * The bytes the repository's namespace may still store (Infinity without a limit);
   * `insufficient_storage` when none are left. Call before reading what is to be stored.
   */
  async storageRoom(repository: Repository): Promise<number> {
    const { bytes: limit } = await this.limitsOf({ id: repository.namespaceId, name: repository.namespace });
    if (limit === null) return Infinity;
    const stored = await this.store.storedBytes(repository.namespaceId);
    if (stored >= limit) throw storageQuotaExceeded(repository.namespace, limit, stored);
    return limit - stored;
  }

  /**
   * `writer`, failing with `insufficient_storage` as soon as the chunks it creates pass `room`
   * bytes (from storageRoom): a push over its quota stops there, not at its end.
   */
  limitWriter(writer: ChunkWriter, repository: Repository, room: number): ChunkWriter {
    if (room === Infinity) return writer;
    let created = 0;
    return {
      put: async (chunk: Buffer | EncodedChunk, digest?: string, options?: PutOptions): Promise<PutResult> => {
        const result = await writer.put(chunk, digest, options);
        if (result.created) created += result.size;
        if (created > room) {
          const limit = (await this.limitsOf({ id: repository.namespaceId, name: repository.namespace })).bytes ?? Infinity;
          throw storageQuotaExceeded(repository.namespace, limit, limit - room + created);
        }
        return result;
      },
      commit: () => writer.commit(),
      abort: () => writer.abort(),
    };
  }

  /**
   * Charges the chunks of a commit (digest -> size) to the repository's namespace inside the
   * transaction `tx` that records it; `insufficient_storage` (and the transaction rolls back)
   * when the namespace's stored bytes then pass its limit.
   */
  async charge(tx: QuotaStore, repository: Repository, sizes: ReadonlyMap<string, number>): Promise<void> {
    const stored = await tx.chargeChunks(repository.namespaceId, sizes);
    const { bytes: limit } = await this.limitsOf({ id: repository.namespaceId, name: repository.namespace }, tx);
    if (limit !== null && stored > limit) throw storageQuotaExceeded(repository.namespace, limit, stored);
  }

  /**
   * `too_many` (429) unless one more repository fits the namespace's quota. Inside the
   * transaction that creates it: concurrent creators queue on the check (QuotaStore.countRepositories).
   */
  async assertRoomForRepository(tx: QuotaStore, namespace: Pick<Namespace, 'id' | 'name'>): Promise<void> {
    const { repositories: limit } = await this.limitsOf(namespace, tx);
    if (limit === null) return;
    const count = await tx.countRepositories(namespace.id, true);
    if (count >= limit) {
      throw new DomainError('too_many', `namespace ${namespace.name} has ${count} repositories, its quota: delete one or ask an administrator to raise the quota`, {
        quota: 'repositories',
        limit,
        used: count,
      });
    }
  }

  /** `too_many` (429) unless `count` more active VMs of the namespace fit its quota, counted on every server. */
  async assertRoomForVms(namespace: Pick<Namespace, 'id' | 'name'>, count: number): Promise<void> {
    const { runningVms: limit } = await this.limitsOf(namespace);
    if (limit === null) return;
    const active = await this.store.countActiveVms(namespace.id);
    if (active + count > limit) {
      throw tooMany(`namespace ${namespace.name} may run at most ${limit} VMs at once (its quota; ${active} run now): delete one or try again later`);
    }
  }

  private async limitsOf(namespace: Pick<Namespace, 'id' | 'name'>, store: QuotaStore = this.store): Promise<QuotaLimits> {
    return this.applying(namespace, (await store.getQuota(namespace.id))?.limits ?? NO_LIMITS);
  }

  /** The limits that apply to a namespace whose own are `own`. */
  private applying(namespace: Pick<Namespace, 'name'>, own: QuotaLimits): QuotaLimits {
    // The server's own organization holds the VM base images: the defaults do not limit it.
    const defaults = namespace.name === SYSTEM_NAMESPACE ? NO_LIMITS : this.defaults;
    return {
      bytes: own.bytes ?? defaults.bytes,
      repositories: own.repositories ?? defaults.repositories,
      runningVms: own.runningVms ?? defaults.runningVms,
    };
  }

  private async reportOf(namespace: Namespace, quota: NamespaceQuota | undefined): Promise<QuotaReport> {
    const [bytes, repositories, runningVms] = await Promise.all([
      this.store.storedBytes(namespace.id),
      this.store.countRepositories(namespace.id),
      this.store.countActiveVms(namespace.id),
    ]);
    const overrides = quota?.limits ?? NO_LIMITS;
    return { namespace, limits: this.applying(namespace, overrides), overrides, usage: { bytes, repositories, runningVms } };
  }
}
