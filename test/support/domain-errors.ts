import { expect } from 'vitest';
import { DomainError, type ErrorKind } from '../../src/domain/errors.js';

/** Fails unless `promise` rejects with a DomainError of `kind` (what every store contract promises). */
export async function expectDomainError(promise: Promise<unknown>, kind: ErrorKind): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).kind).toBe(kind);
}
