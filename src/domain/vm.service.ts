import { randomBytes } from 'node:crypto';
import { v4 as uuidv4 } from 'uuid';
import { ChunkDiskSource } from './disk-source.js';
import { conflict, forbidden, invalid, isDomainError, notFound, tooMany, unprocessable } from './errors.js';
import { DEFAULT_VM_SIZE, type Commit, type Manifest, type ManifestEntry, type Namespace, type Vm, type VmState } from './model.js';
import type { AccessPolicy } from './access-policy.js';
import type { AccountService } from './account.service.js';
import type { RunningVm, VmRuntime } from './ports/vm-runtime.js';
import type { Principal, Scope } from './principal.js';
import type { SnapshotService } from './snapshot.service.js';
import type { ChunkStore, MetadataStore } from '../store/types.js';

/** Caps on VMs booting, running or paused at once (paused ones keep their memory). 0 runs none. */
export interface VmCaps {
  readonly maxRunning: number;
  readonly maxRunningPerOwner: number;
}

/** Which commit a VM starts from: by id, by `repo:tag` of the caller's namespace, or by tag name alone. */
export type CommitSource = { commitId: string } | { ref: string } | { tagName: string };

/**
 * The file of a tag that is a VM's root disk: this name, else the tag's only file. The
 * convention is documented in storage/README.md.
 */
export const ROOT_DISK_FILE = 'rootfs.img';

/** A VM of this server that holds a process slot: booting, then running or paused. */
interface LiveVm {
  ownerId: number;
  /** Resolves once the guest agent answers; rejects when the boot fails. */
  booted: Promise<RunningVm>;
  /** Set once booted, so that the state is read from the process without waiting. */
  handle?: RunningVm;
}

/**
 * VMs that run: boots a commit's root disk through the VmRuntime, read lazily from the chunk
 * store (never copied), each VM with its own copy-on-write layer and a fresh identity; then
 * exec, pause, resume and delete. Owns the map of this server's live VMs, which the caps count.
 * Only members of a VM's owning namespace see or touch it: everyone else gets `not_found`.
 */
export class VmService {
  private readonly live = new Map<string, LiveVm>();
  /** Wakes of sleeping VMs under way, one per VM, so that concurrent first uses boot it once. */
  private readonly waking = new Map<string, Promise<RunningVm>>();
  private readonly deletedListeners: ((vmId: string) => Promise<void>)[] = [];

  constructor(
    private readonly store: MetadataStore,
    private readonly chunks: ChunkStore,
    private readonly policy: AccessPolicy,
    private readonly accounts: AccountService,
    private readonly snapshots: SnapshotService,
    private readonly runtime: VmRuntime,
    private readonly caps: VmCaps,
    private readonly now: () => string,
  ) {}

  /**
   * Marks dead the VMs a previous server process left booting, running or paused: none of this
   * process runs yet, and their processes ended with that server. Called once at start.
   */
  async reconcile(): Promise<void> {
    await this.store.markRunningVmsDead();
  }

  /**
   * Boots a VM of the caller's acting namespace from a commit they may read, and resolves once
   * it answers exec. The root disk is the commit's ROOT_DISK_FILE or its only file
   * (`unprocessable` otherwise). `not_found` "commit not found" for a commit id the caller may
   * not read; `invalid` for a ref not of the form `repo:tag`; `too_many` past a cap.
   */
  async fromCommit(principal: Principal, source: CommitSource): Promise<Vm> {
    const owner = await this.accounts.actingNamespace(principal);
    await this.policy.assertWriteIn(principal, owner);
    const commit = await this.resolveCommit(principal, owner, source);
    const disk = rootDiskOf(await this.snapshots.manifestOf(commit));
    const vm: Vm = {
      id: uuidv4(),
      commitId: commit.id,
      repositoryId: commit.repositoryId,
      namespaceId: owner.id,
      state: 'booting',
      labels: {},
      ...DEFAULT_VM_SIZE,
      createdAt: this.now(),
      deletedAt: null,
    };
    // The check and the slot's claim run in one turn of the event loop, so concurrent
    // requests cannot both take the last slot.
    this.assertRoomFor(owner);
    const booted = this.boot(vm, disk, () => this.store.createVm(vm));
    this.live.set(vm.id, { ownerId: owner.id, booted });
    await booted;
    return { ...vm, state: 'running' };
  }

  /** The VMs of the caller's acting namespace that are not deleted, oldest first, with their live state. */
  async list(principal: Principal): Promise<Vm[]> {
    this.policy.requireScope(principal, 'repo:read');
    const owner = await this.accounts.actingNamespace(principal);
    if ((await this.policy.roleIn(principal, owner.id)) === undefined) throw forbidden(`not a member of ${owner.name}`);
    return (await this.store.listVms(owner.id)).map((vm) => this.withLiveState(vm));
  }

  /** A VM of a namespace the caller belongs to, with its live state. */
  async status(principal: Principal, id: string): Promise<Vm> {
    return this.withLiveState(await this.visible(principal, id, 'repo:read'));
  }

  /**
   * A VM of a namespace the caller belongs to, with its process, for work inside it (exec,
   * files; VmGuestService): waits for its boot, and boots a sleeping VM from its commit first
   * (see awake). `conflict` when it has no process; the handle refuses work while paused.
   */
  async guest(principal: Principal, id: string): Promise<{ vm: Vm; handle: RunningVm }> {
    const vm = await this.visible(principal, id, 'repo:write');
    return { vm, handle: await this.awake(vm) };
  }

  /** Runs `listener` (awaited) for each VM deleted, once its process is gone, before delete answers. */
  onDeleted(listener: (vmId: string) => Promise<void>): void {
    this.deletedListeners.push(listener);
  }

  /**
   * Pauses (vCPUs frozen, memory kept) or resumes a VM. Idempotent. Resuming a sleeping VM boots
   * it (see awake); pausing one, or a VM whose process is gone, is a `conflict`.
   */
  async setState(principal: Principal, id: string, state: Extract<VmState, 'paused' | 'running'>): Promise<void> {
    const vm = await this.visible(principal, id, 'repo:write');
    const handle = state === 'running' ? await this.awake(vm) : await this.handleOf(vm);
    await (state === 'paused' ? handle.pause() : handle.resume());
    await this.store.setVmState(vm.id, state);
  }

  /** Stops a VM's process (waiting for its boot first) and marks it deleted; it is never seen again. */
  async delete(principal: Principal, id: string): Promise<void> {
    const vm = await this.visible(principal, id, 'repo:write');
    await this.stop(vm.id);
    await this.store.deleteVm(vm.id);
    for (const listener of this.deletedListeners) await listener(vm.id);
  }

  /** Stops every VM of this server (shutdown) and records them dead. */
  async close(): Promise<void> {
    await Promise.all([...this.live.keys()].map(async (id) => {
      await this.stop(id);
      await this.store.setVmState(id, 'dead');
    }));
  }

  private async resolveCommit(principal: Principal, owner: Namespace, source: CommitSource): Promise<Commit> {
    if ('commitId' in source) {
      try {
        return await this.snapshots.readableCommit(principal, source.commitId);
      } catch (e) {
        throw isDomainError(e) && e.kind === 'not_found' ? notFound('commit not found') : e;
      }
    }
    if ('ref' in source) {
      const match = /^([^:]+):([^:]+)$/.exec(source.ref);
      if (!match) throw invalid("Invalid ref format. Expected 'repo_name:tag_name'");
      return (await this.snapshots.resolveTag(principal, owner.name, match[1]!, match[2]!)).commit;
    }
    const found = await this.store.tagsNamed(owner.id, source.tagName, 2);
    if (found.length > 1) {
      throw unprocessable(`tag ${source.tagName} is in several repositories of ${owner.name} (${found.map((f) => f.repository.name).join(', ')}, ...): name one with ref 'repo_name:tag_name'`);
    }
    const commit = found[0] && (await this.store.getCommit(found[0].tag.commitId));
    if (!commit) throw notFound(`tag ${source.tagName} not found`);
    return commit;
  }

  private assertRoomFor(owner: Namespace): void {
    const { maxRunning, maxRunningPerOwner } = this.caps;
    if (this.live.size >= maxRunning) {
      throw tooMany(`this server runs at most ${maxRunning} VMs at once: delete one or try again later`);
    }
    const owned = [...this.live.values()].filter((v) => v.ownerId === owner.id).length;
    if (owned >= maxRunningPerOwner) {
      throw tooMany(`${owner.name} may run at most ${maxRunningPerOwner} VMs at once: delete one or try again later`);
    }
  }

  /**
   * Records the VM booting (`record`), starts it and records it running; on failure frees its
   * slot and records it dead.
   */
  private async boot(vm: Vm, disk: ManifestEntry, record: () => Promise<void>): Promise<RunningVm> {
    let recorded = false;
    try {
      await record();
      recorded = true;
      const handle = await this.runtime.start({
        id: vm.id,
        vcpuCount: vm.vcpuCount,
        memSizeMib: vm.memSizeMib,
        disk: new ChunkDiskSource(disk, this.chunks),
        // A fresh identity per VM, so that two VMs of one commit never share them.
        identity: { hostname: vm.id.slice(0, 8), machineId: randomBytes(16).toString('hex') },
      });
      handle.onExit(() => {
        this.live.delete(vm.id);
        // Nobody awaits an exit: a failed write leaves the row stale until the next start's reconcile().
        this.store.setVmState(vm.id, 'dead').catch(() => undefined);
      });
      const live = this.live.get(vm.id);
      if (live) live.handle = handle;
      await this.store.setVmState(vm.id, 'running');
      return handle;
    } catch (e) {
      this.live.delete(vm.id);
      // The boot's own error is what the caller needs to see, not a failure to record it.
      if (recorded) await this.store.setVmState(vm.id, 'dead').catch(() => undefined);
      throw e;
    }
  }

  /** The running VM's handle, once booted; `conflict` for a VM without a process. */
  private async handleOf(vm: Vm): Promise<RunningVm> {
    const live = this.live.get(vm.id);
    if (!live) throw conflict(`vm ${vm.id} is ${vm.state}: it has no running process`);
    return live.handle ?? live.booted;
  }

  /**
   * The VM's handle, booting it first when it sleeps (a Vers fork's VM, booted on first use).
   * Concurrent callers share one wake. The wake boots the commit's root disk as fromCommit does:
   * `unprocessable` "commit holds no bootable disk", `too_many` past a cap; either leaves the VM
   * sleeping. `conflict` for a VM that is neither live nor sleeping.
   */
  private async awake(vm: Vm): Promise<RunningVm> {
    if (this.live.has(vm.id) || vm.state !== 'sleeping') return this.handleOf(vm);
    let waking = this.waking.get(vm.id);
    if (!waking) {
      waking = this.wake(vm.id).finally(() => this.waking.delete(vm.id));
      this.waking.set(vm.id, waking);
    }
    return waking;
  }

  private async wake(id: string): Promise<RunningVm> {
    // Read again: the row the caller read may predate a wake that has since ended (and the VM died).
    const vm = await this.store.getVm(id);
    if (!vm || vm.deletedAt !== null) throw notFound(`vm ${id} not found`);
    if (vm.state !== 'sleeping') throw conflict(`vm ${id} is ${vm.state}: it has no running process`);
    const commit = await this.store.getCommit(vm.commitId);
    if (!commit) throw notFound(`commit ${vm.commitId} not found`);
    const disk = rootDiskOf(await this.snapshots.manifestOf(commit));
    const owner = await this.store.getNamespaceById(vm.namespaceId);
    if (!owner) throw notFound(`vm ${id} not found`);
    // As in fromCommit: the cap's check and the slot's claim in one turn of the event loop.
    this.assertRoomFor(owner);
    const booted = this.boot(vm, disk, async () => {
      // Deleted while the wake read its commit: boot nothing.
      if (!(await this.store.setVmState(id, 'booting'))) throw notFound(`vm ${id} not found`);
    });
    this.live.set(id, { ownerId: owner.id, booted });
    return booted;
  }

  /** Ends the VM's process, if it has one, and frees its slot. */
  private async stop(id: string): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    const handle = await live.booted.catch(() => undefined);
    await handle?.stop();
    this.live.delete(id);
  }

  /** A VM that is not deleted, of a namespace the caller belongs to; `not_found` for anyone else. */
  private async visible(principal: Principal, id: string, scope: Scope): Promise<Vm> {
    this.policy.requireScope(principal, scope);
    const vm = await this.store.getVm(id);
    if (!vm || vm.deletedAt !== null || (await this.policy.roleIn(principal, vm.namespaceId)) === undefined) {
      throw notFound(`vm ${id} not found`);
    }
    return vm;
  }

  /** The VM with the state of its process when this server runs it, else as recorded. */
  private withLiveState(vm: Vm): Vm {
    const live = this.live.get(vm.id);
    if (!live) return vm;
    return { ...vm, state: live.handle?.state() ?? 'booting' };
  }
}

/** The root disk of a commit: its ROOT_DISK_FILE, else its only file; `unprocessable` otherwise. */
function rootDiskOf(manifest: Manifest): ManifestEntry {
  const files = manifest.entries.filter((e) => e.type === 'file');
  const disk = files.find((e) => e.path === ROOT_DISK_FILE) ?? (files.length === 1 ? files[0] : undefined);
  if (!disk || disk.size === 0) throw unprocessable('commit holds no bootable disk');
  return disk;
}
