import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { TokenService } from '../auth/token-service.js';
import type { Config } from '../config.js';
import type { Services } from '../domain/services.js';
import { authenticate } from './auth.js';
import { toHttpError, type HttpError } from './errors.js';
import { idempotency } from './idempotency.js';
import { nativeRoutes } from './native/routes.js';
import { versRoutes } from './vers/routes.js';

export const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../openapi/snapfork.yaml', import.meta.url));

export interface AppOptions {
  /** Check every answer against openapi/ too (tests turn this on). */
  validateResponses?: boolean;
  log?: (line: string) => void;
}

/** One API dialect: where it is mounted and how it writes an error. */
interface Dialect {
  prefix: string;
  errorBody(e: HttpError): unknown;
}

/** Vers' envelope, which the whole native /api/v1 shares. */
const versError = (e: HttpError) => ({ error: e.message, success: false, ...(e.details ? { details: e.details } : {}) });

const DIALECTS: Dialect[] = [{ prefix: '/api/v1', errorBody: versError }];

const dialectOf = (path: string): Dialect =>
  DIALECTS.find((d) => path === d.prefix || path.startsWith(`${d.prefix}/`)) ?? DIALECTS[0]!;

export function createApp(services: Services, tokens: TokenService, config: Config, options: AppOptions = {}) {
  const log = options.log ?? ((line: string) => console.error(line));
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  app.use((req, res, next) => {
    const id = req.get('x-request-id') ?? randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    next();
  });
  app.get('/.well-known/jwks.json', (_req, res) => void res.json(tokens.jwks()));
  app.use(express.json({ limit: '1mb', type: ['application/json', 'application/*+json'] }));
  app.use(
    OpenApiValidator.middleware({
      apiSpec: OPENAPI_DOCUMENT,
      validateRequests: { allowUnknownQueryParameters: true },
      validateResponses: options.validateResponses ?? false,
      validateSecurity: false,
      fileUploader: false,
      $refParser: { mode: 'dereference' },
    }),
  );
  app.use(authenticate(tokens, services.accounts));
  app.use(idempotency(services.idempotency));
  app.use('/api/v1', versRoutes(services));
  app.use('/api/v1', nativeRoutes(services, config));

  app.use((_req: Request, _res: Response, next: NextFunction) => next({ status: 404, message: 'not found' }));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toHttpError(err);
    if (e.status >= 500) {
      log(`[${res.locals.requestId}] ${req.method} ${req.originalUrl}: ${(err as Error)?.stack ?? String(err)}`);
    }
    if (res.headersSent) return void res.destroy();
    for (const [name, value] of Object.entries(e.headers ?? {})) res.setHeader(name, value);
    res.status(e.status).json(dialectOf(req.path).errorBody(e));
  });
  return app;
}
