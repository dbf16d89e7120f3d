import type { ErrorKind } from '../domain/errors.js';
import { isDomainError } from '../domain/errors.js';

/** An error as HTTP sees it, before a dialect puts it into its own envelope. */
export interface HttpError {
  status: number;
  message: string;
  kind: ErrorKind | 'method_not_allowed' | 'request_timeout' | 'unsupported_media_type' | 'range_not_satisfiable' | 'internal';
  details?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export const STATUS_OF_KIND: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unprocessable: 422,
  too_many: 429,
  insufficient_storage: 507,
  unavailable: 503,
  corrupt: 500,
};

const KIND_OF_STATUS: Record<number, HttpError['kind']> = {
  400: 'invalid',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  409: 'conflict',
  413: 'too_large',
  415: 'unsupported_media_type',
  416: 'range_not_satisfiable',
  422: 'unprocessable',
  429: 'too_many',
};

/** An HTTP-only failure (such as 416) raised by a router, with headers the answer must carry. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface ValidatorError {
  status: number;
  message?: string;
  errors?: { path?: string; message?: string }[];
}

interface BodyParserError {
  type: string;
  status?: number;
  statusCode?: number;
  expose?: boolean;
  message: string;
}

function isStatusError(e: unknown): e is ValidatorError {
  return typeof e === 'object' && e !== null && typeof (e as ValidatorError).status === 'number';
}

/**
 * Classifies anything thrown while serving a request. Domain errors map by kind; the OpenAPI
 * validator's and body parser's errors keep their 4xx status with a readable message; anything
 * else is an internal error whose details never reach the client (the caller logs it).
 */
export function toHttpError(e: unknown): HttpError {
  if (isDomainError(e)) {
    const status = STATUS_OF_KIND[e.kind];
    // A corrupt chunk is our failure, not the caller's: say so without internals.
    const message = e.kind === 'corrupt' ? 'stored data failed its integrity check' : e.message;
    const headers = e.retryAfterSeconds === undefined ? undefined : { 'Retry-After': String(Math.ceil(e.retryAfterSeconds)) };
    return { status, message, kind: e.kind, details: e.details, headers };
  }
  if (e instanceof HttpStatusError) {
    return { status: e.status, message: e.message, kind: KIND_OF_STATUS[e.status] ?? 'invalid', headers: e.headers };
  }
  if ((e as BodyParserError)?.type === 'entity.parse.failed') {
    return { status: 400, message: 'request body is not valid JSON', kind: 'invalid' };
  }
  if (isStatusError(e) && e.status >= 400 && e.status < 500) {
    const kind = KIND_OF_STATUS[e.status] ?? 'invalid';
    const detail = e.errors
      ?.map((x) => `${(x.path ?? '').replace(/^\/(body|query|params|headers)\/?/, '$1 ').trim()} ${x.message ?? ''}`.trim())
      .join('; ');
    const message = e.status === 404 ? 'not found' : detail || e.message || 'bad request';
    return { status: e.status, message, kind };
  }
  return { status: 500, message: 'internal server error', kind: 'internal' };
}
