/** Idempotency keys: a claim per (scope, key), completed with the answer to replay. */
import type { Selectable } from 'kysely';
import type { IdempotencyReservation, StoredResponse } from '../types.js';
import type { Executor, IdempotencyKeyTable } from './schema.js';

const CLAIM_ATTEMPTS = 3;

/**
 * Delete, insert, then read: run it inside a transaction. The insert decides between concurrent
 * claims of one key (ON CONFLICT DO NOTHING); a claim released between a lost insert and the
 * read is claimed again, a few times, then reported in progress: others keep using the key.
 */
export async function reserveIdempotencyKey(
  db: Executor,
  scope: string,
  key: string,
  notBefore: string,
  now: () => string,
): Promise<IdempotencyReservation> {
  // Forgetting every expired claim here keeps the table bounded by the keys of one expiry
  // window, and frees this key when its own claim has expired. Each row is deleted once,
  // through the created_at index, so the cost is spread over the reservations.
  await db.deleteFrom('idempotency_keys').where('created_at', '<', notBefore).execute();
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    const { numInsertedOrUpdatedRows } = await db
      .insertInto('idempotency_keys')
      .values({ scope, key, body_digest: null, status: null, headers: null, body: null, created_at: now() })
      .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
      .executeTakeFirstOrThrow();
    if (numInsertedOrUpdatedRows === 1n) return { state: 'new' };
    const row = await db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('scope', '=', scope)
      .where('key', '=', key)
      .executeTakeFirst();
    if (row) return toReservation(row);
  }
  return { state: 'in_progress' };
}

export async function completeIdempotencyKey(
  db: Executor,
  scope: string,
  key: string,
  bodyDigest: string,
  response: StoredResponse,
): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ body_digest: bodyDigest, status: response.status, headers: JSON.stringify(response.headers), body: response.body })
    .where('scope', '=', scope)
    .where('key', '=', key)
    .where('status', 'is', null)
    .execute();
}

export async function releaseIdempotencyKey(db: Executor, scope: string, key: string): Promise<void> {
  await db.deleteFrom('idempotency_keys').where('scope', '=', scope).where('key', '=', key).execute();
}

/** What a reservation that found the key already claimed means. */
const toReservation = (r: Selectable<IdempotencyKeyTable>): IdempotencyReservation => {
  // The table's CHECK sets status, digest, headers and body together.
  if (r.status === null || r.body_digest === null || r.body === null) return { state: 'in_progress' };
  return {
    state: 'done',
    bodyDigest: r.body_digest,
    response: { status: r.status, headers: JSON.parse(r.headers ?? '{}') as Record<string, string>, body: r.body },
  };
};
