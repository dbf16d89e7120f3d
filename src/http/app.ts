import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { TokenService } from '../auth/token-service.js';
import type { Config } from '../config.js';
import type { Services } from '../domain/services.js';
import { authenticate } from './auth.js';
import type { Dialect } from './dialect.js';
import { toHttpError } from './errors.js';
import { forgeDialect } from './forge/routes.js';
import { gitlabDialect } from './gitlab/routes.js';
import { gitverseDialect } from './gitverse/routes.js';
import { hashParsedBody } from './body-digest.js';
import { hashIdempotentBodies, idempotency } from './idempotency.js';
import { nativeDialect } from './native/routes.js';
import { MAX_COMMIT_BODY } from './native/transfer-routes.js';
import { oxenDialect } from './oxen/routes.js';
import { setPublicUrl } from './public-url.js';
import { versDialect } from './vers/routes.js';

export const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../openapi/snapfork.yaml', import.meta.url));

export interface AppOptions {
  /** Check every answer against openapi/ too (tests turn this on). */
  validateResponses?: boolean;
  log?: (line: string) => void;
}

/** Mounted in this order; errors take the envelope of the longest matching prefix. */
const DIALECTS: readonly Dialect[] = [versDialect, nativeDialect, oxenDialect, forgeDialect, gitlabDialect, gitverseDialect];

const BY_PREFIX_LENGTH = [...DIALECTS].sort((a, b) => b.prefix.length - a.prefix.length);
const dialectOf = (path: string): Dialect =>
  BY_PREFIX_LENGTH.find((d) => d.prefix === '' || path === d.prefix || path.startsWith(`${d.prefix}/`)) ?? nativeDialect;

export function createApp(services: Services, tokens: TokenService, config: Config, options: AppOptions = {}) {
  const log = options.log ?? ((line: string) => console.error(line));
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  setPublicUrl(app, config.publicUrl);

  app.use((req, res, next) => {
    const id = req.get('x-request-id') ?? randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    next();
  });
  app.get('/.well-known/jwks.json', (_req, res) => void res.json(tokens.jwks()));
  app.use(hashIdempotentBodies);
  const json = (limit: number | string) =>
    express.json({ limit, type: ['application/json', 'application/*+json'], verify: hashParsedBody });
  // A manifest commit names every chunk of a snapshot; parsed first, the 1 MB parser skips it.
  app.post(`${nativeDialect.prefix}/repos/:owner/:repo/commits`, json(MAX_COMMIT_BODY));
  app.use(json('1mb'));
  for (const dialect of DIALECTS) if (dialect.bodyParsers) app.use(dialect.prefix || '/', ...dialect.bodyParsers);
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
  for (const dialect of DIALECTS) app.use(dialect.prefix || '/', dialect.routes(services, config));

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
