import { randomBytes } from 'node:crypto';
import { v4 as uuidv4 } from 'uuid';
import { conflict, forbidden, invalid, isDomainError, notFound, tooMany, unprocessable, type DomainError } from './errors.js';
import type { Commit, Namespace, Repository, Vm, VmState } from './model.js';
import type { AccessPolicy } from './access-policy.js';
import type { AccountService } from './account.service.js';
import type { BootPlan, BootPlanner } from './boot-planner.js';
import type { RunningVm, VmRuntime, VmSnapshot, VmSpec } from './ports/vm-runtime.js';
import type { Principal, Scope } from './principal.js';
import type { RepositoryService } from './repository.service.js';
import type { SnapshotService } from './snapshot.service.js';
import type { QuotaService } from './quota.service.js';
import { DEFAULT_IMAGE, type SystemImageService } from './system-image.service.js';
import { commitTree } from './vm-commit.js';
import { DEFAULT_KERNEL, labelsProblem, VM_LIMITS, vmSizeProblem } from './vm-config.js';
import type { ChunkStore, CommitStore, NamespaceStore, RepositoryStore, TagStore, VmStore } from '../store/types.js';

/** Caps on VMs booting, running or paused at once (paused ones keep their memory). 0 runs none. */
export interface VmCaps {
  readonly maxRunning: number;
  readonly maxRunningPerOwner: number;
}

/** Which commit a VM starts from: by id, by `repo:tag` of the caller's namespace, or by tag name alone. */
export type CommitSource = { commitId: string } | { ref: string } | { tagName: string };

/** What `POST /vm/new_root` asks for; absent fields take the image's own. */
export interface NewRootRequest {
  vcpuCount?: number;
  memSizeMib?: number;
  /** The root disk's size, at least the image's: the guest grows its file system to fill it. */
  fsSizeMib?: number;
  /** A tag of the system repository (DEFAULT_IMAGE). */
  imageName?: string;
  kernelName?: string;
  labels?: Readonly<Record<string, string>>;
}

/** Where branches start: a live VM (its memory too), a commit, or an id that names either. */
export type BranchSource = { vmId: string } | { commit: CommitSource } | { vmOrCommitId: string };

/** What POST /vm/{id}/commit asks for. */
export interface VmCommitRequest extends SnapshotOptions {
  name?: string;
  description?: string;
}

/** How a live VM is snapshotted for a commit or a branch. */
export interface SnapshotOptions {
  /** Leave the VM paused afterwards instead of running it on. */
  keepPaused: boolean;
  /** `conflict` at once for a VM still booting, instead of waiting for its boot. */
  skipWaitBoot?: boolean;
}

/** The most VMs one branch request makes (the caps bound them further). */
export const MAX_BRANCH_COUNT = 16;
/** The most commits GET /vm/commits/{id}/parents walks. */
export const MAX_LINEAGE = 1000;
/**
 * The repository of a namespace where commits of its VMs land when the VM's own repository is
 * not the namespace's (a VM of someone else's public commit): created, private, on first use.
 */
export const VM_COMMITS_REPOSITORY = 'vm-commits';

const MIB = 1024 * 1024;
/** The states of a VM that has a process (on some server). */
const LIVE_STATES: ReadonlySet<VmState> = new Set(['booting', 'running', 'paused']);

/** Starts a recorded VM's process with the identity given. */
type StartVm = (identity: VmSpec['identity']) => Promise<RunningVm>;

/** A VM of this server that holds a process slot: booting, then running or paused. */
interface LiveVm {
  ownerId: number;
  /** What the VM stands on (its branches too): a commit of it keeps the disk as `plan.disks()`'s rootDisk. */
  plan: BootPlan;
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
    private readonly store: NamespaceStore & RepositoryStore & CommitStore & TagStore & VmStore,
    private readonly chunks: ChunkStore,
    private readonly policy: AccessPolicy,
    private readonly accounts: AccountService,
    private readonly repositories: RepositoryService,
    private readonly snapshots: SnapshotService,
    private readonly images: SystemImageService,
    private readonly planner: BootPlanner,
    private readonly runtime: VmRuntime,
    private readonly caps: VmCaps,
    private readonly quotas: QuotaService,
    /** This server's id, recorded on the VMs it runs (several servers may share one database). */
    private readonly host: string,
    private readonly now: () => string,
  ) {}

  /**
   * Marks dead the VMs this server's previous process left booting, running or paused: none of
   * this process runs yet, and their processes ended with that one. Called once at start.
   */
  async reconcile(): Promise<void> {
    await this.store.markRunningVmsDead(this.host);
  }

  /** How many VMs this server runs now: booting, running or paused (each holds a process). */
  runningCount(): number {
    return this.live.size;
  }

  /**
   * Boots a VM of the caller's acting namespace from a commit they may read, and resolves once
   * it answers exec. What it boots is the BootPlanner's plan: the commit's root disk, or for a
   * dataset the default base image with the tree at /data (`unprocessable`, `too_large` as the
   * planner says). `not_found` "commit not found" for a commit id the caller may not read;
   * `invalid` for a ref not of the form `repo:tag`; `too_many` past a cap.
   */
  async fromCommit(principal: Principal, source: CommitSource): Promise<Vm> {
    const owner = await this.accounts.actingNamespace(principal);
    await this.policy.assertWriteIn(principal, owner);
    const commit = await this.resolveCommit(principal, owner, source);
    await this.quotas.assertRoomForVms(owner, 1);
    const plan = await this.planner.plan(await this.snapshots.manifestOf(commit));
    const vm = this.newVm(owner, commit, plan, {});
    // A VM whose boot failed is deleted: the caller never learns its id, so nobody could.
    return this.settleOne(vm, this.claimAndBoot(owner, vm, plan, this.startOf(vm, plan)));
  }

  /**
   * Boots a VM of the caller's acting namespace from a base image of the system repository
   * (imported first when the guest assets changed), sized as asked within VM_LIMITS, with
   * `labels`. With `waitBoot` it resolves once the VM answers exec (a failed boot leaves no VM);
   * without, once the VM is recorded `booting`, its boot going on (a failed one leaves it `dead`). `invalid` for a size,
   * disk size or labels out of bounds; `not_found` for an image or kernel other than the
   * defaults; `too_many` past a cap.
   */
  async newRoot(principal: Principal, request: NewRootRequest, waitBoot: boolean): Promise<Vm> {
    const problem = vmSizeProblem(request) ?? (request.labels && labelsProblem(request.labels));
    if (problem) throw invalid(problem);
    const kernel = request.kernelName ?? DEFAULT_KERNEL;
    if (kernel !== DEFAULT_KERNEL) throw notFound(`kernel ${kernel} not found`);
    const imageName = request.imageName ?? DEFAULT_IMAGE;
    const owner = await this.accounts.actingNamespace(principal);
    await this.policy.assertWriteIn(principal, owner);
    await this.quotas.assertRoomForVms(owner, 1);
    const image = await this.images.image(imageName);
    const plan = await this.planner.plan(image.manifest);
    const imageMib = Math.ceil((plan.rootDisk?.size ?? 0) / MIB);
    const { fsSizeMib } = request;
    if (fsSizeMib !== undefined && !(Number.isSafeInteger(fsSizeMib) && fsSizeMib >= imageMib && fsSizeMib <= VM_LIMITS.maxFsSizeMib)) {
      throw invalid(`fs_size_mib must be an integer from ${imageMib} (the size of image ${imageName}) to ${VM_LIMITS.maxFsSizeMib}`);
    }
    const vm = this.newVm(owner, image.commit, plan, {
      vcpuCount: request.vcpuCount,
      memSizeMib: request.memSizeMib,
      labels: request.labels,
    });
    let recorded!: () => void;
    const rowWritten = new Promise<void>((resolve) => (recorded = resolve));
    const live = this.claimAndBoot(owner, vm, plan, this.startOf(vm, plan, fsSizeMib === undefined ? undefined : fsSizeMib * MIB), recorded);
    const { booted } = live;
    if (waitBoot) return this.settleOne(vm, live);
    // Its failure is recorded (dead) and answered to whoever uses it next: nobody awaits it here.
    booted.catch(() => undefined);
    await Promise.race([rowWritten, booted]);
    return vm;
  }

  /**
   * Makes `count` VMs of the caller's acting namespace from one source, all running when it
   * resolves (or none: on any failure the others are deleted). From a live VM, each resumes a
   * snapshot of it (memory, devices and disk as of now; the VM runs on unless `keepPaused`) with
   * its own identity, recorded as of the VM's commit; a sleeping VM branches from its commit.
   * From a commit, one boots as fromCommit does and the others resume a snapshot of it, each
   * with its own identity. `invalid` for a count outside
   * 1..MAX_BRANCH_COUNT; `too_many` when the caps do not hold all of them; `conflict` for a
   * dead VM; `not_found` as fromCommit and status say.
   */
  async branch(principal: Principal, source: BranchSource, count: number, options: SnapshotOptions): Promise<Vm[]> {
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_BRANCH_COUNT) throw invalid(`count must be from 1 to ${MAX_BRANCH_COUNT}`);
    let from: { vmId: string } | { commit: CommitSource };
    if ('vmOrCommitId' in source) {
      const isVm = (await this.findVisible(principal, source.vmOrCommitId)) !== undefined;
      from = isVm ? { vmId: source.vmOrCommitId } : { commit: { commitId: source.vmOrCommitId } };
    } else {
      from = source;
    }
    if ('vmId' in from) {
      const parent = await this.visible(principal, from.vmId, 'repo:write');
      if (this.live.has(parent.id)) return this.branchLive(principal, parent, count, options);
      if (parent.state !== 'sleeping') throw this.noProcess(parent);
      from = { commit: { commitId: parent.commitId } };
    }
    const owner = await this.accounts.actingNamespace(principal);
    await this.policy.assertWriteIn(principal, owner);
    const commit = await this.resolveCommit(principal, owner, from.commit);
    await this.quotas.assertRoomForVms(owner, count);
    const plan = await this.planner.plan(await this.snapshots.manifestOf(commit));
    this.assertRoomFor(owner, count);
    const first = this.newVm(owner, commit, plan, {});
    const booted = await this.settleOne(first, this.claimAndBoot(owner, first, plan, this.startOf(first, plan)));
    if (count === 1) return [booted];
    // One VM boots (or resumes the commit's state) and the others resume a snapshot of it, each
    // with its own identity: N-1 resumes cost a fraction of N-1 more boots of the same disk.
    let snapshot: VmSnapshot;
    try {
      snapshot = await this.snapshotOf(first, this.live.get(first.id)!, { keepPaused: false }, { flushGuest: false, resumes: count - 1 });
    } catch (error) {
      await this.discard(first);
      throw error;
    }
    try {
      return [booted, ...(await this.resumeAll(owner, first, plan, snapshot, count - 1, [first]))];
    } finally {
      await snapshot.release();
    }
  }

  /**
   * Commits a VM: a new commit whose parent is the VM's commit, holding the VM's disk as of now
   * (the base's chunks where it wrote nothing) and its memory and device state, so that a VM of
   * the commit resumes where this one was. The VM runs on unless `keepPaused`. The commit lands
   * in the VM's repository when the VM's namespace owns it, else in the namespace's
   * VM_COMMITS_REPOSITORY; tag it to name it. A sleeping VM (never run) commits its tree as is.
   * A dataset VM's commit holds the dataset's entries unchanged and the VM's root disk (the base
   * image's chunks where it wrote nothing) in its machine state, MACHINE_STATE_FILES.rootDisk:
   * a VM of it boots that disk with the dataset at /data again. `conflict` for a dead VM.
   */
  async commit(principal: Principal, id: string, request: VmCommitRequest): Promise<Commit> {
    const vm = await this.visible(principal, id, 'repo:write');
    const owner = await this.store.getNamespaceById(vm.namespaceId);
    if (!owner) throw notFound(`vm ${id} not found`);
    await this.policy.assertWriteIn(principal, owner);
    const base = await this.store.getCommit(vm.commitId);
    if (!base) throw notFound(`commit ${vm.commitId} not found`);
    const live = this.live.get(vm.id);
    if (!live && vm.state !== 'sleeping') throw this.noProcess(vm);
    let tree = await this.snapshots.manifestOf(base);
    const repository = await this.commitRepository(principal, owner, vm);
    await this.quotas.storageRoom(repository);
    if (live) {
      // The commit's disk must boot cold too (another QEMU): the guest writes out its cache first.
      const snapshot = await this.snapshotOf(vm, live, request, { flushGuest: true });
      try {
        // The disk the VM booted: a dataset's base image may have moved on since.
        const { rootDisk } = await live.plan.disks();
        tree = await commitTree(this.chunks, tree, rootDisk, snapshot, Math.floor(Date.parse(this.now()) / 1000));
      } finally {
        await snapshot.release();
      }
    }
    return this.snapshots.recordCommit(principal, repository, tree, {
      parentIds: [vm.commitId],
      title: request.name ?? null,
      description: request.description ?? '',
      parentVmId: vm.id,
    });
  }

  /**
   * A commit the caller may read and its ancestors, first parents only, newest first, as far as
   * the caller may read them (at most MAX_LINEAGE). `not_found` "commit not found" otherwise.
   */
  async lineage(principal: Principal, commitId: string): Promise<Commit[]> {
    const chain: Commit[] = [];
    for (let id: string | undefined = commitId; id !== undefined && chain.length < MAX_LINEAGE; ) {
      let commit: Commit;
      try {
        commit = await this.snapshots.readableCommit(principal, id);
      } catch (e) {
        if (!(isDomainError(e) && e.kind === 'not_found')) throw e;
        if (chain.length === 0) throw notFound('commit not found');
        break;
      }
      chain.push(commit);
      id = commit.parentIds[0];
    }
    return chain;
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

  /** status(), and the VM whose commit this VM started from, if its commit was made from one (Vers' grandparent_vm_id). */
  async metadata(principal: Principal, id: string): Promise<{ vm: Vm; grandparentVmId: string | null }> {
    const vm = await this.status(principal, id);
    return { vm, grandparentVmId: (await this.store.getCommit(vm.commitId))?.parentVmId ?? null };
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
    // Only the server that runs a VM can end its process.
    if (this.runsElsewhere(vm)) throw this.noProcess(vm);
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

  private newVm(owner: Namespace, commit: Commit, plan: BootPlan, asked: { vcpuCount?: number; memSizeMib?: number; labels?: Vm['labels'] }): Vm {
    return {
      id: uuidv4(),
      commitId: commit.id,
      repositoryId: commit.repositoryId,
      namespaceId: owner.id,
      state: 'booting',
      labels: { ...asked.labels },
      vcpuCount: asked.vcpuCount ?? plan.size.vcpuCount,
      memSizeMib: asked.memSizeMib ?? plan.size.memSizeMib,
      createdAt: this.now(),
      deletedAt: null,
      host: this.host,
    };
  }

  /**
   * Claims a slot for a new VM and boots it, recording it first (`onRecorded` runs once the row
   * is written). The cap's check and the claim run in one turn of the event loop, so concurrent
   * requests cannot both take the last slot.
   */
  private claimAndBoot(owner: Namespace, vm: Vm, plan: BootPlan, start: StartVm, onRecorded?: () => void): LiveVm {
    this.assertRoomFor(owner);
    const booted = this.boot(vm, start, async () => {
      await this.store.createVm(vm);
      onRecorded?.();
    });
    const live = { ownerId: owner.id, plan, booted };
    this.live.set(vm.id, live);
    return live;
  }

  /**
   * How a plan's VM starts: resuming the machine state its commit saved, when this runtime can
   * (same format and size, no larger disk), else booting its disk cold.
   */
  private startOf(vm: Vm, plan: BootPlan, diskSizeBytes?: number): StartVm {
    return async (identity) => {
      const { disk, dataDisk } = await plan.disks();
      const spec: VmSpec = { id: vm.id, vcpuCount: vm.vcpuCount, memSizeMib: vm.memSizeMib, disk, dataDisk, diskSizeBytes, identity };
      const { saved } = plan;
      if (saved && saved.format === this.runtime.format && saved.vcpuCount === vm.vcpuCount && saved.memSizeMib === vm.memSizeMib && diskSizeBytes === undefined) {
        try {
          return await this.runtime.start({ ...spec, resume: saved });
        } catch {
          // A saved state that does not load costs its speed only: the disk boots cold below.
        }
      }
      return this.runtime.start(spec);
    };
  }

  /** Branches a live VM: `count` VMs resumed from one snapshot of it (see branch). */
  private async branchLive(principal: Principal, parent: Vm, count: number, options: SnapshotOptions): Promise<Vm[]> {
    const owner = await this.store.getNamespaceById(parent.namespaceId);
    if (!owner) throw notFound(`vm ${parent.id} not found`);
    await this.policy.assertWriteIn(principal, owner);
    await this.quotas.assertRoomForVms(owner, count);
    this.assertRoomFor(owner, count);
    const live = this.live.get(parent.id)!;
    const snapshot = await this.snapshotOf(parent, live, options, { flushGuest: false, resumes: count });
    try {
      return await this.resumeAll(owner, parent, live.plan, snapshot, count, []);
    } finally {
      await snapshot.release();
    }
  }

  /**
   * `count` new VMs like `like` (its commit, plan, size and labels), each resuming `snapshot`: all
   * running, or on any failure none, nor any of `alsoDiscarded` (VMs made for the same request).
   */
  private async resumeAll(owner: Namespace, like: Vm, plan: BootPlan, snapshot: VmSnapshot, count: number, alsoDiscarded: Vm[]): Promise<Vm[]> {
    try {
      // Again: the snapshot took a while, and others may have claimed slots meanwhile.
      this.assertRoomFor(owner, count);
      return await this.settle(Array.from({ length: count }, () => {
        const vm: Vm = { ...like, id: uuidv4(), state: 'booting', createdAt: this.now(), deletedAt: null, host: this.host };
        const start: StartVm = (identity) =>
          this.runtime.start({ id: vm.id, vcpuCount: vm.vcpuCount, memSizeMib: vm.memSizeMib, disk: snapshot.disk, identity, resume: snapshot });
        return { vm, live: this.claimAndBoot(owner, vm, plan, start) };
      }));
    } catch (error) {
      await Promise.all(alsoDiscarded.map((vm) => this.discard(vm)));
      throw error;
    }
  }

  /** A snapshot of a live VM, recording it paused when it stays so. */
  private async snapshotOf(
    vm: Vm,
    live: LiveVm,
    { keepPaused, skipWaitBoot }: SnapshotOptions,
    use: { flushGuest: boolean; resumes?: number },
  ): Promise<VmSnapshot> {
    if (!live.handle && skipWaitBoot) throw conflict(`vm ${vm.id} is booting`);
    const snapshot = await (live.handle ?? (await live.booted)).snapshot({ keepPaused, ...use });
    if (keepPaused) await this.store.setVmState(vm.id, 'paused');
    return snapshot;
  }

  /** Waits for VMs booting together: all of them running, or on any failure none (the others deleted). */
  private async settle(started: { vm: Vm; live: LiveVm }[]): Promise<Vm[]> {
    const outcomes = await Promise.allSettled(started.map((s) => s.live.booted));
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (!failed) return started.map(({ vm }) => ({ ...vm, state: 'running' }));
    await Promise.all(started.map(({ vm }) => this.discard(vm)));
    throw failed.reason;
  }

  /** Stops a VM made for a request that failed, and deletes its row: nobody was told its id. */
  private async discard(vm: Vm): Promise<void> {
    await this.stop(vm.id);
    await this.store.deleteVm(vm.id);
  }

  /** settle() of one VM. */
  private async settleOne(vm: Vm, live: LiveVm): Promise<Vm> {
    await this.settle([{ vm, live }]);
    return { ...vm, state: 'running' };
  }

  /** Where a VM's commits land (see commit). */
  private async commitRepository(principal: Principal, owner: Namespace, vm: Vm): Promise<Repository> {
    const record = await this.store.getRepositoryRecord(vm.repositoryId);
    if (record && record.deletedAt === null && record.repository.namespaceId === owner.id) return record.repository;
    const existing = await this.store.getRepository(owner.name, VM_COMMITS_REPOSITORY);
    if (existing) return existing;
    try {
      return await this.repositories.create(principal, owner.name, { name: VM_COMMITS_REPOSITORY, visibility: 'private', description: 'Commits of VMs of commits from elsewhere' });
    } catch (e) {
      // Another commit created it meanwhile.
      const created = isDomainError(e) && e.kind === 'conflict' ? await this.store.getRepository(owner.name, VM_COMMITS_REPOSITORY) : undefined;
      if (!created) throw e;
      return created;
    }
  }

  /** `too_many` unless `count` more VMs of `owner` fit under the caps. */
  private assertRoomFor(owner: Namespace, count = 1): void {
    const { maxRunning, maxRunningPerOwner } = this.caps;
    if (this.live.size + count > maxRunning) {
      throw tooMany(`this server runs at most ${maxRunning} VMs at once: delete one or try again later`);
    }
    const owned = [...this.live.values()].filter((v) => v.ownerId === owner.id).length;
    if (owned + count > maxRunningPerOwner) {
      throw tooMany(`${owner.name} may run at most ${maxRunningPerOwner} VMs at once: delete one or try again later`);
    }
  }

  /**
   * Records the VM booting (`record`), starts it and records it running; on failure frees its
   * slot and records it dead.
   */
  private async boot(vm: Vm, start: StartVm, record: () => Promise<void>): Promise<RunningVm> {
    let recorded = false;
    try {
      await record();
      recorded = true;
      // A fresh identity per VM, so that two VMs of one commit (or branches of one VM) never share them.
      const handle = await start({ hostname: vm.id.slice(0, 8), machineId: randomBytes(16).toString('hex') });
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
    if (!live) throw this.noProcess(vm);
    return live.handle ?? live.booted;
  }

  /**
   * Why this server has no process of `vm`: another server runs it (VM processes stay where they
   * started, and only that server can drive them), or it has none at all.
   */
  private noProcess(vm: Vm): DomainError {
    if (this.runsElsewhere(vm)) return conflict(`vm ${vm.id} runs on another snapfork server (${vm.host}): send its requests to that server`);
    return conflict(`vm ${vm.id} is ${vm.state}: it has no running process`);
  }

  /** Whether another server's process runs `vm`, as its row says. */
  private runsElsewhere(vm: Vm): boolean {
    return !this.live.has(vm.id) && vm.host !== null && vm.host !== this.host && LIVE_STATES.has(vm.state);
  }

  /**
   * The VM's handle, booting it first when it sleeps (a Vers fork's VM, booted on first use).
   * Concurrent callers share one wake. The wake boots the commit as fromCommit does, at the size
   * the VM was recorded with: `unprocessable` or `too_large` as the planner says, `too_many` past
   * a cap; each leaves the VM sleeping. `conflict` for a VM that is neither live nor sleeping.
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
    if (vm.state !== 'sleeping') throw this.noProcess(vm);
    const commit = await this.store.getCommit(vm.commitId);
    if (!commit) throw notFound(`commit ${vm.commitId} not found`);
    const plan = await this.planner.plan(await this.snapshots.manifestOf(commit));
    const owner = await this.store.getNamespaceById(vm.namespaceId);
    if (!owner) throw notFound(`vm ${id} not found`);
    await this.quotas.assertRoomForVms(owner, 1);
    // As in fromCommit: the cap's check and the slot's claim in one turn of the event loop.
    this.assertRoomFor(owner);
    const mine = { ...vm, host: this.host };
    const booted = this.boot(mine, this.startOf(mine, plan), async () => {
      if (await this.store.claimSleepingVm(id, this.host)) return;
      // Deleted while the wake read its commit (boot nothing), or woken by another server.
      const now = await this.store.getVm(id);
      throw !now || now.deletedAt !== null ? notFound(`vm ${id} not found`) : this.noProcess(now);
    });
    this.live.set(id, { ownerId: owner.id, plan, booted });
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
    const vm = await this.findVisible(principal, id);
    if (!vm) throw notFound(`vm ${id} not found`);
    return vm;
  }

  /** The VM if it is not deleted and the caller belongs to its namespace. */
  private async findVisible(principal: Principal, id: string): Promise<Vm | undefined> {
    const vm = await this.store.getVm(id);
    if (!vm || vm.deletedAt !== null || (await this.policy.roleIn(principal, vm.namespaceId)) === undefined) return undefined;
    return vm;
  }

  /** The VM with the state of its process when this server runs it, else as recorded. */
  private withLiveState(vm: Vm): Vm {
    const live = this.live.get(vm.id);
    if (!live) return vm;
    return { ...vm, state: live.handle?.state() ?? 'booting' };
  }
}
