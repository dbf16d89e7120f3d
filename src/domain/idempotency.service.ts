import { createHash } from 'node:crypto';
import { conflict, unprocessable } from './errors.js';
import type { MetadataStore, StoredResponse } from '../store/types.js';

/** How long a key's first answer is replayed to retries. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface IdempotentRequest {
  /** Who asks: keys of different callers never collide. */
  caller: string;
  key: string;
  method: string;
  path: string;
  body: string;
}

/**
 * Retried writes are safe: the same Idempotency-Key from the same caller within 24 h replays the
 * first answer instead of acting twice (the Vers SDKs retry on 409, 429 and 5xx with one key).
 * A key reused for a different request is `unprocessable`; a retry that arrives while the first
 * request still runs is `conflict`, which those SDKs retry.
 */
export class IdempotencyService {
  constructor(
    private readonly store: MetadataStore,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Claims the key. `replay`: answer with the stored response. `act`: do the work, then call
   * `finish` with the answer — it is stored, except a server error (5xx), which releases the key
   * so that a retry acts again.
   */
  async begin(request: IdempotentRequest): Promise<
    { kind: 'replay'; response: StoredResponse } | { kind: 'act'; finish(response: StoredResponse): Promise<void> }
  > {
    const fingerprint = createHash('sha256').update(`${request.method} ${request.path}\n${request.body}`).digest('hex');
    const notBefore = new Date(this.clock() - IDEMPOTENCY_WINDOW_MS).toISOString();
    const claim = await this.store.reserveIdempotencyKey(request.caller, request.key, fingerprint, notBefore);
    switch (claim.state) {
      case 'done':
        return { kind: 'replay', response: claim.response };
      case 'in_progress':
        throw conflict('a request with this idempotency key is still in progress');
      case 'mismatch':
        throw unprocessable('this idempotency key was already used for a different request');
      case 'new':
        return {
          kind: 'act',
          finish: (response) =>
            response.status >= 500
              ? this.store.releaseIdempotencyKey(request.caller, request.key)
              : this.store.completeIdempotencyKey(request.caller, request.key, response),
        };
    }
  }
}
