/**
 * Prometheus metrics of one app instance (prom-client, in its own Registry: several servers in
 * one process, as in the tests, never share or clash). The domain reports through the Telemetry
 * port; HTTP traffic is measured here. Every label's values are bounded: routes are the
 * contract's path templates ("unmatched" for any other path), never a path a client sent.
 */
import type { NextFunction, Request, Response } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Telemetry } from '../domain/ports/telemetry.js';
import { ConnectionBytes } from './connection-bytes.js';

/** The route label of a request whose path no operation of the contract holds. */
export const UNMATCHED_ROUTE = 'unmatched';

export class Metrics {
  private readonly registry = new Registry();
  private readonly duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from a request arriving to its answer ending, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly requestBytes = new Counter({
    name: 'http_request_bytes_total',
    help: 'Bytes received on HTTP connections (headers and bodies), counted as each answer ends',
    registers: [this.registry],
  });
  private readonly responseBytes = new Counter({
    name: 'http_response_bytes_total',
    help: 'Bytes sent on HTTP connections (headers and bodies), counted as each answer ends',
    registers: [this.registry],
  });
  private readonly forks = new Counter({ name: 'snapfork_forks_total', help: 'Forks committed', registers: [this.registry] });
  private readonly chunksWritten = new Counter({
    name: 'snapfork_chunks_written_total',
    help: 'Chunks written to the chunk store, new to it',
    registers: [this.registry],
  });
  private readonly chunksDeduplicated = new Counter({
    name: 'snapfork_chunks_deduplicated_total',
    help: 'Chunks sent for writing that the store already held: nothing was written',
    registers: [this.registry],
  });
  private readonly chunkBytesStored = new Counter({
    name: 'snapfork_chunk_bytes_stored_total',
    help: 'Bytes the written chunks occupy in the store (compressed where that helped)',
    registers: [this.registry],
  });
  private readonly gcRuns = new Counter({
    name: 'snapfork_gc_runs_total',
    help: 'Garbage collections run, dry runs included (dry_run label)',
    labelNames: ['dry_run'] as const,
    registers: [this.registry],
  });
  private readonly gcFreedChunks = new Counter({ name: 'snapfork_gc_freed_chunks_total', help: 'Chunks garbage collection deleted', registers: [this.registry] });
  private readonly gcFreedBytes = new Counter({
    name: 'snapfork_gc_freed_bytes_total',
    help: 'Stored bytes of the chunks garbage collection deleted',
    registers: [this.registry],
  });
  private readonly gcFreedPacks = new Counter({ name: 'snapfork_gc_freed_packs_total', help: 'Pack files garbage collection deleted', registers: [this.registry] });
  private readonly gcFreedCommits = new Counter({
    name: 'snapfork_gc_freed_commits_total',
    help: 'Commits garbage collection deleted (nothing reached them)',
    registers: [this.registry],
  });
  private readonly gcSeconds = new Gauge({ name: 'snapfork_gc_last_duration_seconds', help: 'How long the last garbage collection took', registers: [this.registry] });
  private readonly gcLastRun = new Gauge({
    name: 'snapfork_gc_last_run_timestamp_seconds',
    help: 'When the last garbage collection ended (Unix time)',
    registers: [this.registry],
  });
  private readonly fsckRuns = new Counter({
    name: 'snapfork_fsck_runs_total',
    help: 'fsck runs finished, by result: ok, or problems (something missing or corrupt)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  private readonly fsckProblems = new Gauge({
    name: 'snapfork_fsck_problems',
    help: 'Problems the last fsck run found, by kind: missing (referred to, not stored) or corrupt',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  private readonly fsckLastRun = new Gauge({
    name: 'snapfork_fsck_last_run_timestamp_seconds',
    help: 'When the last fsck run finished, in seconds since the Unix epoch',
    registers: [this.registry],
  });
  private runningVms: () => number = () => 0;
  private readonly connectionBytes = new ConnectionBytes();

  /** What the domain reports (createServices' `telemetry`). */
  readonly telemetry: Telemetry = {
    forked: () => this.forks.inc(),
    chunksStored: ({ created, deduplicated, storedBytes }) => {
      this.chunksWritten.inc(created);
      this.chunksDeduplicated.inc(deduplicated);
      this.chunkBytesStored.inc(storedBytes);
    },
    collected: ({ dryRun, chunks, bytes, packs, commits, seconds }) => {
      this.gcRuns.inc({ dry_run: String(dryRun) });
      this.gcSeconds.set(seconds);
      this.gcLastRun.setToCurrentTime();
      if (dryRun) return;
      this.gcFreedChunks.inc(chunks);
      this.gcFreedBytes.inc(bytes);
      this.gcFreedPacks.inc(packs);
      this.gcFreedCommits.inc(commits);
    },
    fsckFinished: ({ missing, corrupt }) => {
      this.fsckRuns.inc({ result: missing + corrupt === 0 ? 'ok' : 'problems' });
      this.fsckProblems.set({ kind: 'missing' }, missing);
      this.fsckProblems.set({ kind: 'corrupt' }, corrupt);
      this.fsckLastRun.setToCurrentTime();
    },
  };

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const runningVms = () => this.runningVms();
    new Gauge({
      name: 'snapfork_vms_running',
      help: 'VMs this server runs now (booting, running or paused)',
      registers: [this.registry],
      collect() {
        this.set(runningVms());
      },
    });
  }

  /** Reads the number of running VMs from `count` at each scrape. */
  countRunningVms(count: () => number): void {
    this.runningVms = count;
  }

  /**
   * Middleware, mounted first: times each request until its answer ends (or the connection
   * closes) and counts the bytes its connection carried meanwhile. `routeOf` names the request's
   * route template, undefined for a path the contract does not hold.
   */
  measure(routeOf: (req: Request) => string | undefined) {
    return (req: Request, res: Response, next: NextFunction) => {
      const stop = this.duration.startTimer({ method: req.method, route: routeOf(req) ?? UNMATCHED_ROUTE });
      // Taken now: by 'close' the request may have been detached from its socket.
      const socket = req.socket;
      res.once('close', () => {
        stop({ status: String(res.statusCode) });
        const { read, written } = this.connectionBytes.since(socket);
        this.requestBytes.inc(read);
        this.responseBytes.inc(written);
      });
      next();
    };
  }

  /** The exposition's media type and text. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
