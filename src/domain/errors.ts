/**
 * The one error model of snapfork. Services and stores throw a DomainError with a kind; each
 * HTTP dialect maps the kind to its own status code and envelope (src/http/errors.ts).
 */
export type ErrorKind =
  | 'invalid' // malformed input (HTTP 400)
  | 'unauthorized' // no credentials, or credentials that do not verify (401)
  | 'forbidden' // authenticated, but not allowed (403)
  | 'not_found' // missing, or not visible to the caller (404)
  | 'conflict' // clashes with the current state (409)
  | 'too_large' // over a size limit (413)
  | 'unprocessable' // well-formed but semantically invalid (422)
  | 'too_many' // past a cap on what may run at once, such as running VMs; worth retrying later (429)
  | 'insufficient_storage' // the disk is full (507)
  | 'unavailable' // this server lacks a part the request needs, such as the VM guest assets (503)
  | 'corrupt'; // stored data failed its integrity check: reported, never served (500)

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** Machine-readable detail a dialect may include (for example the missing chunk digests). */
    readonly details?: Record<string, unknown>,
    /** When the same request is worth trying again, in seconds (HTTP's Retry-After), if known. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const invalid = (message: string, details?: Record<string, unknown>) =>
  new DomainError('invalid', message, details);
export const unauthorized = (message: string) => new DomainError('unauthorized', message);
export const forbidden = (message: string) => new DomainError('forbidden', message);
export const notFound = (message: string) => new DomainError('not_found', message);
export const conflict = (message: string, details?: Record<string, unknown>) =>
  new DomainError('conflict', message, details);
export const tooLarge = (message: string) => new DomainError('too_large', message);
export const unprocessable = (message: string, details?: Record<string, unknown>) =>
  new DomainError('unprocessable', message, details);
export const tooMany = (message: string) => new DomainError('too_many', message);
export const corrupt = (message: string) => new DomainError('corrupt', message);
export const insufficientStorage = (message: string) => new DomainError('insufficient_storage', message);
export const unavailable = (message: string, retryAfterSeconds?: number) =>
  new DomainError('unavailable', message, undefined, retryAfterSeconds);

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;
