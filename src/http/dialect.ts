import type { RequestHandler, Router } from 'express';
import type { Config } from '../config.js';
import type { Services } from '../domain/services.js';
import type { HttpError } from './errors.js';

/**
 * One API dialect: where it is mounted, its routes over the shared domain services, and how it
 * writes an error. The app picks the error envelope of the dialect with the longest prefix that
 * matches the request path (and whose `paths` hold it), so that even validator errors (before
 * any route runs) speak the client's dialect.
 */
export interface Dialect {
  name: string;
  /** Mount path, e.g. `/api/v4`; `''` for the root. */
  prefix: string;
  /**
   * The paths under `prefix` the dialect holds (`['/repos', ...]`), for a dialect mounted where
   * others are too; unset: all of them. A path that no dialect holds gets the native envelope.
   */
  paths?: readonly string[];
  routes(services: Services, config: Config): Router;
  /**
   * Body parsers for the dialect's own content types, run at its prefix after authentication
   * and before the OpenAPI validator (JSON is parsed for everyone already), so those bodies are
   * validated too. Each caps its body (request-limits.ts); the app adds the time limit.
   */
  bodyParsers?: RequestHandler[];
  /**
   * The error's body, a JSON object (the app adds `request_id`); `path` is the request's, for
   * the few routes whose envelope differs.
   */
  errorBody(e: HttpError, path: string): object;
}
