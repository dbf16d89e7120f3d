import { createHash } from 'node:crypto';
import { conflict, unprocessable } from './errors.js';
import type { UserPrincipal } from './principal.js';
import type { IdempotencyStore, StoredResponse } from '../store/types.js';

/** How long a key's first answer is replayed to retries. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface IdempotentRequest {
  /**
   * Who asks, in full: the same login with another org claim or other scopes is another caller,
   * so that a narrower token never receives what a wider one did.
   */
  principal: UserPrincipal;
  method: string;
  /** The request's URL path and query. */
  url: string;
  key: string;
  /**
   * The SHA-256 (hex) of the request's whole body, undefined when it cannot be known (which
   * matches nothing). Called only when a completed claim is found; it may have to read (and
   * discard) a body that nothing read yet.
   */
  bodyDigest(): Promise<string | undefined>;
}

export type IdempotentClaim =
  | { kind: 'replay'; response: StoredResponse }
  | {
      kind: 'act';
      /** Keeps the answer of the request whose whole body hashed to `bodyDigest`, for retries. */
      record(bodyDigest: string, response: StoredResponse): Promise<void>;
      /** Forgets the claim: a retry acts again. */
      release(): Promise<void>;
    };

/**
 * Retried writes are safe: the same Idempotency-Key from the same caller for the same route
 * within 24 h replays the first answer instead of acting twice (the Vers SDKs retry on 409, 429
 * and 5xx with one key). A retry is the same request only when its body has the same SHA-256;
 * a key reused with another body is `unprocessable`; a retry that arrives while the first
 * request still runs is `conflict`, which those SDKs retry.
 */
export class IdempotencyService {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Claims the key for this caller and route. `replay`: answer with the stored response (the
   * retry's body matched). `act`: do the work, then `record` the answer or `release` the key.
   */
  async begin(request: IdempotentRequest): Promise<IdempotentClaim> {
    const { principal, method, url, key } = request;
    const scope = createHash('sha256')
      .update(JSON.stringify([principal.login, principal.org ?? null, [...principal.scopes].sort(), method, url]))
      .digest('hex');
    const notBefore = new Date(this.clock() - IDEMPOTENCY_WINDOW_MS).toISOString();
    const claim = await this.store.reserveIdempotencyKey(scope, key, notBefore);
    switch (claim.state) {
      case 'done':
        if ((await request.bodyDigest()) !== claim.bodyDigest) {
          throw unprocessable('this idempotency key was already used for a different request');
        }
        return { kind: 'replay', response: claim.response };
      case 'in_progress':
        throw conflict('a request with this idempotency key is still in progress');
      case 'new':
        return {
          kind: 'act',
          record: (bodyDigest, response) => this.store.completeIdempotencyKey(scope, key, bodyDigest, response),
          release: () => this.store.releaseIdempotencyKey(scope, key),
        };
    }
  }
}
