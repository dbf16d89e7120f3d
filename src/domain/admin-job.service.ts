/**
 * Garbage collection and fsck as background jobs: on a large store either may run for longer
 * than a client waits on one request (or than a connection may sit idle), so a caller can start
 * one, get its id at once, and ask where it stands, from any server of the database. The job's
 * row is written before the work starts and records how it ended; a server that stops while
 * running one marks it failed when it starts again (abandonLeftovers).
 */
import { v7 as uuidv7 } from 'uuid';
import { notFound } from './errors.js';
import type { AccessPolicy } from './access-policy.js';
import type { FsckOptions, FsckService } from './fsck.service.js';
import type { GcOptions, GcService } from './gc.service.js';
import type { AdminJob, AdminJobKind } from './model.js';
import type { Principal } from './principal.js';
import type { AdminJobStore } from '../store/types.js';

/** The most jobs a listing answers. */
export const MAX_LISTED_JOBS = 100;

export class AdminJobService {
  /** The jobs this server runs, until each has recorded its outcome. */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly store: AdminJobStore,
    private readonly policy: AccessPolicy,
    private readonly gc: GcService,
    private readonly fsck: FsckService,
    /** This server's id, recorded on the jobs it runs. */
    private readonly host: string,
    private readonly now: () => string,
  ) {}

  /** Starts a garbage collection (GcService.collect: the same checks, answered at once). */
  startGc(principal: Principal, options: GcOptions): Promise<AdminJob> {
    return this.start(principal, 'gc', { ...options }, () => this.gc.begin(principal, options));
  }

  /** Starts an fsck run (FsckService.run: the same checks, answered at once). */
  startFsck(principal: Principal, options: FsckOptions): Promise<AdminJob> {
    return this.start(principal, 'fsck', { ...options }, () => this.fsck.begin(principal, options));
  }

  /** A job by id; administrators only, `not_found` for an unknown id. */
  async get(principal: Principal, id: string): Promise<AdminJob> {
    this.policy.requireScope(principal, 'admin');
    const job = await this.store.getJob(id);
    if (!job) throw notFound(`job ${id} not found`);
    return job;
  }

  /** The newest jobs (at most MAX_LISTED_JOBS), newest first; administrators only. */
  async list(principal: Principal, limit = MAX_LISTED_JOBS): Promise<AdminJob[]> {
    this.policy.requireScope(principal, 'admin');
    return this.store.listJobs(Math.min(limit, MAX_LISTED_JOBS));
  }

  /** Marks failed the jobs this server left running when it stopped; call once at start. */
  abandonLeftovers(): Promise<number> {
    return this.store.abandonJobs(this.host);
  }

  /** Resolves once every job this server started has recorded its outcome (a clean stop waits for it). */
  async settled(): Promise<void> {
    await Promise.all(this.running);
  }

  /**
   * Records the job, then has `begin` check the request and claim what the work needs (a
   * refusal, such as another collection running here, is recorded as the job's failure and
   * thrown), then runs the work in the background.
   */
  private async start(principal: Principal, kind: AdminJobKind, options: Record<string, unknown>, begin: () => () => Promise<unknown>): Promise<AdminJob> {
    this.policy.requireScope(principal, 'admin');
    const job: AdminJob = { id: uuidv7(), kind, status: 'running', options, result: null, error: null, host: this.host, createdAt: this.now(), finishedAt: null };
    await this.store.createJob(job);
    let work: () => Promise<unknown>;
    try {
      work = begin();
    } catch (e) {
      await this.store.finishJob(job.id, { error: e instanceof Error ? e.message : String(e) });
      throw e;
    }
    const finished = work()
      .then(
        (result) => this.store.finishJob(job.id, { result }),
        (e: unknown) => this.store.finishJob(job.id, { error: e instanceof Error ? e.message : String(e) }),
      )
      // The database refused the outcome: the row says running until this server starts again.
      .catch(() => undefined)
      .finally(() => this.running.delete(finished));
    this.running.add(finished);
    return job;
  }
}
