import type { RequestHandler, Router } from 'express';
import type { Config } from '../config.js';
import type { Services } from '../domain/services.js';
import type { HttpError } from './errors.js';

/**
 * One API dialect: where it is mounted, its routes over the shared domain services, and how it
 * writes an error. The app picks the error envelope of the dialect with the longest prefix that
 * matches the request path, so that even validator errors (before any route runs) speak the
 * client's dialect.
 */
export interface Dialect {
  name: string;
  /** Mount path, e.g. `/api/v4`; `''` for the root. */
  prefix: string;
  routes(services: Services, config: Config): Router;
  /**
   * Body parsers for the dialect's own content types, run at its prefix before the OpenAPI
   * validator (JSON is parsed for everyone already), so those bodies are validated too.
   */
  bodyParsers?: RequestHandler[];
  errorBody(e: HttpError): unknown;
}
