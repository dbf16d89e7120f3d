import type { ChunkStore, MetadataStore } from '../store/types.js';

/** How long a readiness check waits for a store's answer before calling it failed. */
export const READINESS_TIMEOUT_MS = 2_000;

export type CheckResult = 'ok' | 'failed';

export interface Readiness {
  ready: boolean;
  checks: { database: CheckResult; chunks: CheckResult };
}

/** Fails when `ping` has not answered within `ms`, so that a hung store cannot hang the probe. */
async function check(ping: () => Promise<void>, ms: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve('failed'), ms);
  });
  try {
    return await Promise.race([ping().then((): CheckResult => 'ok', (): CheckResult => 'failed'), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether the stores this server needs answer: what a load balancer's readiness probe asks. */
export class HealthService {
  constructor(
    private readonly store: Pick<MetadataStore, 'ping'>,
    private readonly chunks: Pick<ChunkStore, 'ping'>,
    private readonly timeoutMs = READINESS_TIMEOUT_MS,
  ) {}

  /** Asks both stores at once; each check is `failed` when its store rejects or is too slow. */
  async readiness(): Promise<Readiness> {
    const [database, chunks] = await Promise.all([check(() => this.store.ping(), this.timeoutMs), check(() => this.chunks.ping(), this.timeoutMs)]);
    return { ready: database === 'ok' && chunks === 'ok', checks: { database, chunks } };
  }
}
