import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { TokenService } from '../auth/token-service.js';
import type { Config } from '../config.js';
import type { Services } from '../domain/services.js';
import { authenticate, principalOf } from './auth.js';
import { loadContract, type ContractOperation } from './contract.js';
import type { Dialect } from './dialect.js';
import { HttpStatusError, toHttpError } from './errors.js';
import { forgeDialect } from './forge/routes.js';
import { gitlabDialect } from './gitlab/routes.js';
import { gitverseDialect } from './gitverse/routes.js';
import { hashIdempotentBodies, idempotency } from './idempotency.js';
import { recordFailure, requestIdOf, requestLogging } from './logging.js';
import type { Metrics } from './metrics.js';
import { nativeDialect } from './native/routes.js';
import { MAX_COMMIT_BODY } from './native/transfer-routes.js';
import { opsRoutes } from './ops-routes.js';
import { oxenDialect } from './oxen/routes.js';
import { publicBase, requireValidOrigin, setPublicUrl } from './public-url.js';
import { bodyRateWatch, formBody, jsonBody, withBodyDeadline, type CutRequest } from './request-limits.js';
import { MAX_UI_FORM, UI_PREFIX, uiRoutes } from './ui/routes.js';
import { contractValidation } from './validation.js';
import { versDialect } from './vers/routes.js';
import { MAX_VM_FILE_BODY } from './vers/vm-routes.js';

export interface AppOptions {
  /** Check every answer against openapi/ too (tests turn this on). */
  validateResponses?: boolean;
}

/** Mounted in this order; errors take the envelope of the longest matching prefix. */
const DIALECTS: readonly Dialect[] = [versDialect, nativeDialect, oxenDialect, forgeDialect, gitlabDialect, gitverseDialect];

const BY_PREFIX_LENGTH = [...DIALECTS].sort((a, b) => b.prefix.length - a.prefix.length);
const under = (path: string, prefix: string) => prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
/** The dialect whose paths hold `path`; snapfork's own (native) for a path no dialect holds. */
const dialectOf = (path: string): Dialect =>
  BY_PREFIX_LENGTH.find((d) => under(path, d.prefix) && (d.paths ?? ['']).some((p) => under(path, d.prefix + p))) ?? nativeDialect;

/**
 * `metrics`: this instance's, whose Telemetry the services report to (src/main.ts wires both);
 * `logger`: this server's (logging.ts createLogger), which every request's lines go to.
 */
export function createApp(services: Services, tokens: TokenService, config: Config, metrics: Metrics, logger: Logger, options: AppOptions = {}) {
  const contract = loadContract();
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  setPublicUrl(app, config.publicUrl);

  const sendError = (req: Request, res: Response, err: unknown) => {
    const e = toHttpError(err);
    // The request's line (logging.ts) says why it failed, once the answer ends.
    recordFailure(res, e.status, err, e.message);
    if (res.headersSent) return void res.destroy();
    for (const [name, value] of Object.entries(e.headers ?? {})) res.setHeader(name, value);
    // Answered before its body was read (401, 413, 408): close rather than read the rest.
    if (!req.complete) res.setHeader('Connection', 'close');
    // baseUrl: a request cut while inside a dialect's router sees only the rest of its path.
    // Every dialect's envelope takes one more field: clients read the ones they know.
    res.status(e.status).json({ ...dialectOf(req.baseUrl + req.path).errorBody(e, req.baseUrl + req.path), request_id: requestIdOf(req) });
  };
  const cut: CutRequest = (req, res, message) => {
    if (res.headersSent) return void req.socket.destroy();
    sendError(req, res, new HttpStatusError(408, message));
  };

  // Metrics, logging and the check for a signed-in caller each ask which operation a request is:
  // the contract is asked once a request, first by the metrics, where req.path is still whole.
  const operations = new WeakMap<Request, ContractOperation>();
  const operationOf = (req: Request) => {
    let operation = operations.get(req);
    if (operation === undefined) operations.set(req, (operation = contract.operationOf(req.method, req.path)));
    return operation;
  };
  const routeOf = (req: Request) => operationOf(req).route;
  app.use(metrics.measure(routeOf));
  app.use(requestLogging(logger, routeOf));
  app.get('/.well-known/jwks.json', (_req, res) => void res.json(tokens.jwks()));
  app.get('/openapi.json', (_req, res) => void res.type('application/json').send(contract.json));
  app.get('/openapi.yaml', (_req, res) => void res.type('application/yaml').send(contract.yaml));
  app.use(opsRoutes(services, metrics));
  app.use(requireValidOrigin);

  // Who is asking comes first, from headers alone: no body is read for a caller who may not send it.
  app.use(bodyRateWatch(config.timeouts, cut));
  app.use(authenticate(tokens, services.accounts));
  app.use((req, res, next) => {
    if (operationOf(req).needsUser) services.policy.requireUser(principalOf(res));
    next();
  });

  // Hashing starts before any parser reads a body: an idempotent retry is matched on all of it.
  app.use(hashIdempotentBodies);
  // A manifest commit names every chunk of a snapshot: only a signed-in caller may send that much.
  const commitBody = jsonBody(MAX_COMMIT_BODY);
  app.post(`${nativeDialect.prefix}/repos/:owner/:repo/commits`, (req, res, next) =>
    principalOf(res).kind === 'user' ? commitBody(req, res, next) : next(),
  );
  const parsed = (parser: express.RequestHandler) => withBodyDeadline(parser, config.timeouts, cut);
  // A file written into a VM travels whole in its JSON body: up to MAX_VM_FILE_BODY, signed in.
  const vmFileBody = parsed(jsonBody(MAX_VM_FILE_BODY));
  app.put(`${versDialect.prefix}/vm/:vm_id/files`, (req, res, next) =>
    principalOf(res).kind === 'user' ? vmFileBody(req, res, next) : next(),
  );
  app.use(parsed(jsonBody()));
  for (const dialect of DIALECTS) {
    for (const parser of dialect.bodyParsers ?? []) app.use(dialect.prefix || '/', parsed(parser));
  }
  // The web UI answers every path below it in HTML, its errors too: the contract (and its
  // validator, below) covers the API only.
  app.use(UI_PREFIX, uiRoutes(services, tokens, parsed(formBody(MAX_UI_FORM))));
  // Someone who opens the server's address in a browser lands on the web UI; an API client
  // (one that does not ask for HTML first) still gets snapfork's own 404 at the root.
  app.get('/', (req, res, next) => (req.accepts(['json', 'html']) === 'html' ? res.redirect(302, `${publicBase(req)}${UI_PREFIX}/`) : next()));
  app.use(
    // The document served at /openapi.json (the validator works on its own deep copy).
    contractValidation(contract.document, {
      validateRequests: { allowUnknownQueryParameters: true },
      validateResponses: options.validateResponses ?? false,
      validateSecurity: false,
      fileUploader: false,
      $refParser: { mode: 'dereference' },
    }),
  );
  app.use(idempotency(services.idempotency));
  for (const dialect of DIALECTS) app.use(dialect.prefix || '/', dialect.routes(services, config));

  app.use((_req: Request, _res: Response, next: NextFunction) => next({ status: 404, message: 'not found' }));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => sendError(req, res, err));
  return app;
}
