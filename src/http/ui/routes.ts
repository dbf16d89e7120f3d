/**
 * The web UI under /ui: HTML pages rendered on the server over the same domain services as the
 * API dialects (this router maps HTTP only), one stylesheet, one small script, no client build.
 * Signed in through a sealed cookie session (session.ts); every POST carries the session's CSRF
 * token. Errors are pages that say what went wrong, with the status the API would answer.
 *
 * Each page costs a bounded amount for any caller: lists are paged, a file preview reads at
 * most PREVIEW_BYTES, a fork network is drawn up to NETWORK_NODES repositories of which at most
 * NETWORK_FIGURES get storage figures, computed one at a time through the stats service's own
 * work gate.
 */
import { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { TokenService } from '../../auth/token-service.js';
import { invalid, isDomainError } from '../../domain/errors.js';
import type { Repository } from '../../domain/model.js';
import { isVisibility } from '../../domain/names.js';
import { ANONYMOUS, type Principal } from '../../domain/principal.js';
import type { Services } from '../../domain/services.js';
import { HttpStatusError, toHttpError } from '../errors.js';
import { recordFailure, requestIdOf } from '../logging.js';
import { fileETag } from '../native/ranges.js';
import { streamOut } from '../native/streams.js';
import { pageOf } from '../pagination.js';
import { publicBase } from '../public-url.js';
import { loadAssets } from './assets.js';
import type { GraphNode, NodeFigures } from './fork-graph.js';
import { shortId } from './format.js';
import type { Html } from './html.js';
import type { PageContext } from './layout.js';
import { cataloguePage, namespacePage, type Listing, type RepositoryRow } from './pages/catalogue.js';
import { networkPage } from './pages/network.js';
import { filePage, historyPage, overviewPage, treePage } from './pages/repository.js';
import { errorPage, signInPage } from './pages/sign-in.js';
import { repositoryStoragePage, storePage } from './pages/storage.js';
import { vmsPage } from './pages/vms.js';
import { UiPaths, VM_ACTIONS, type VmAction } from './paths.js';
import { csrfMatches, UiSessions, type UiSession } from './session.js';

export const UI_PREFIX = '/ui';
/** The largest form body: a pasted token and a few names. */
export const MAX_UI_FORM = 16 * 1024;
/** The most bytes of a file a preview reads. */
export const PREVIEW_BYTES = 4096;
/** The most repositories a fork network page draws. */
export const NETWORK_NODES = 60;
/** The most of them whose storage figures a page computes. */
export const NETWORK_FIGURES = 24;
/** Rows of a directory, of tags and of VMs a page shows. */
const TREE_PAGE = 100;
const TAGS_PAGE = 50;
const VMS_PAGE = 50;
const MAX_SEARCH = 100;
const MAX_FIELD = 200;
const MAX_TOKEN = 8192;
const MAX_PATH = 4096;

/**
 * The Content-Security-Policy of every answer: scripts and styles from this origin only (none
 * inline), forms posting here only, never framed.
 */
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
};

/** What the notices of a redirect say; the `subject` query parameter fills `{}` in. */
const NOTICES: Record<string, string> = {
  'signed-in': 'Signed in as {}.',
  'signed-out': 'Signed out.',
  forked: 'Forked from {}: this is the new repository.',
  'tag-created': 'Tag {} created.',
  'tag-deleted': 'Tag {} deleted.',
  'vm-paused': 'VM {} paused.',
  'vm-resumed': 'VM {} resumed.',
  'vm-committed': 'VM committed as commit {}.',
  'vm-deleted': 'VM {} deleted.',
};

interface UiLocals {
  ctx: PageContext;
  principal: Principal;
  session: UiSession | undefined;
}

const ui = (res: Response): UiLocals => res.locals.ui as UiLocals;
const param = (req: Request, name: string): string => String(req.params[name]);

/** A text field of a form, trimmed: '' when absent; 400 when repeated or longer than `max`. */
function field(req: Request, name: string, max = MAX_FIELD): string {
  const value = (req.body as Record<string, unknown> | undefined)?.[name];
  if (value === undefined) return '';
  if (typeof value !== 'string') throw invalid(`form field ${name} must be given once`);
  if (value.length > max) throw invalid(`form field ${name} may hold at most ${max} characters`);
  return value.trim();
}

/** A text query parameter: '' when absent; 400 when repeated or longer than `max`. */
function query(req: Request, name: string, max: number): string {
  const value = req.query[name];
  if (value === undefined) return '';
  if (typeof value !== 'string') throw invalid(`query parameter ${name} must be given once`);
  if (value.length > max) throw invalid(`query parameter ${name} may hold at most ${max} characters`);
  return value;
}

/** `page` (from 1) of `size` rows. */
function fixedPage(req: Request, size: number) {
  const { page } = pageOf(req);
  return { page, limit: size, offset: (page - 1) * size };
}

/**
 * `parseForm`: the form body parser, with the app's size and time limits. Mounted at UI_PREFIX,
 * before the OpenAPI validator: the contract describes the API, and this router answers every
 * path under it, its errors included.
 */
export function uiRoutes(services: Services, tokens: TokenService, parseForm: RequestHandler): Router {
  const { accounts, repositories, snapshots, forks, stats, vms } = services;
  const sessions = new UiSessions(tokens, accounts, UI_PREFIX);
  const assets = loadAssets();
  const router = Router();
  const pathsOf = (req: Request) => new UiPaths(`${new URL(publicBase(req)).pathname.replace(/\/+$/, '')}${UI_PREFIX}`);

  const send = (res: Response, markup: Html, status = 200) => void res.status(status).type('html').send(markup.markup);
  /** After a write: a GET of `to` (303), with a notice. */
  const redirect = (res: Response, to: string, notice: string, subject = '') => {
    const url = new URL(to, 'http://ui.invalid');
    url.searchParams.set('notice', notice);
    if (subject) url.searchParams.set('subject', subject);
    res.redirect(303, url.pathname + url.search + url.hash);
  };

  router.use((_req, res, next) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    next();
  });

  router.get('/static/:name', (req, res, next) => {
    const asset = assets.get(param(req, 'name'));
    if (!asset) return next();
    res.setHeader('ETag', asset.etag);
    res.setHeader('Cache-Control', 'public, max-age=3600');
    if (req.get('if-none-match') === asset.etag) return void res.status(304).end();
    res.type(asset.type).send(asset.body);
  });

  // Who is looking: the session's user, or a visitor. A session whose token stopped verifying ends here.
  router.use(async (req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    const paths = pathsOf(req);
    let session = await sessions.read(req);
    let principal: Principal = ANONYMOUS;
    let notice = noticeOf(req);
    if (session) {
      try {
        principal = await sessions.principalOf(session);
      } catch (e) {
        if (!(isDomainError(e) && e.kind === 'unauthorized')) throw e;
        sessions.end(req, res);
        session = undefined;
        notice = 'Your session has ended (its token expired or is no longer accepted): sign in again.';
      }
    }
    const viewer = principal.kind === 'user' ? { login: principal.login, admin: principal.scopes.has('admin') } : { login: null, admin: false };
    const locals: UiLocals = { ctx: { paths, viewer, csrf: session?.csrf ?? null, notice }, principal, session };
    res.locals.ui = locals;
    next();
  });

  // Every write carries the session's CSRF token in its form.
  router.use(parseForm);
  router.use((req, res, next) => {
    if (req.method !== 'POST') return next();
    const given = (req.body as Record<string, unknown> | undefined)?.csrf;
    if (!csrfMatches(ui(res).session, given)) {
      throw new HttpStatusError(403, 'this form was refused: it does not carry the security (CSRF) token of your session. Reload the page you came from and send it again');
    }
    next();
  });

  router.get('/', async (req, res) => {
    const { ctx, principal } = ui(res);
    const page = pageOf(req);
    const search = query(req, 'q', MAX_SEARCH).trim();
    const listed = await repositories.catalogue(principal, page, search || undefined);
    const namespaces = principal.kind === 'user' ? await accounts.me(principal).then(({ user, orgs }) => [user, ...orgs.map((m) => m.org)]) : [];
    send(res, cataloguePage(ctx, await listingOf(principal, listed, page), search, namespaces));
  });

  router.get('/namespaces/:ns', async (req, res) => {
    const { ctx, principal } = ui(res);
    const namespace = await accounts.getNamespace(param(req, 'ns'));
    const page = pageOf(req);
    const listed = await repositories.list(principal, namespace.name, page);
    send(res, namespacePage(ctx, namespace, await listingOf(principal, listed, page)));
  });

  /** The rows of a page of repositories, with their visible source and fork count. */
  async function listingOf(principal: Principal, { items, total }: { items: Repository[]; total: number }, page: { page: number; limit: number; offset: number }): Promise<Listing> {
    const rows: RepositoryRow[] = [];
    for (const repository of items) {
      const { parent } = await repositories.describe(principal, repository);
      rows.push({ repository, parent, forks: await forks.countForks(principal, repository) });
    }
    return { rows, total, page: page.page, hasNext: page.offset + items.length < total };
  }

  router.get('/sign-in', async (req, res) => {
    const { ctx } = ui(res);
    // A visitor's session holds the CSRF token the sign-in form carries.
    const session = ui(res).session ?? (await sessions.start(req, res));
    send(res, signInPage({ ...ctx, csrf: session.csrf }, safeNext(ctx, query(req, 'next', MAX_PATH))));
  });

  router.post('/sign-in', async (req, res) => {
    const { ctx } = ui(res);
    const next = safeNext(ctx, field(req, 'next', MAX_PATH));
    const token = field(req, 'token', MAX_TOKEN);
    let verified;
    try {
      if (token === '') throw invalid('paste a token first');
      verified = await sessions.verify(token);
    } catch (e) {
      if (!isDomainError(e) || (e.kind !== 'unauthorized' && e.kind !== 'invalid')) throw e;
      recordFailure(res, 401, e, e.message);
      return send(res, signInPage(ctx, next, `That token was not accepted: ${e.message}.`), 401);
    }
    await sessions.start(req, res, { token, exp: verified.claims.exp });
    redirect(res, next, 'signed-in', verified.claims.sub);
  });

  router.post('/sign-out', (req, res) => {
    sessions.end(req, res);
    redirect(res, ui(res).ctx.paths.home(), 'signed-out');
  });

  router.get('/repos/:owner/:repo', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name] = [param(req, 'owner'), param(req, 'repo')];
    const { repository, tags } = await snapshots.listTags(principal, owner, name);
    const { parent } = await repositories.describe(principal, repository);
    const page = fixedPage(req, TAGS_PAGE);
    const recent = repository.defaultTag === null ? [] : await snapshots.history(principal, owner, name, repository.defaultTag, { limit: 10, offset: 0 });
    const namespaces = principal.kind === 'user' ? await accounts.me(principal).then(({ user, orgs }) => [user.name, ...orgs.map((m) => m.org.name)]) : [];
    send(
      res,
      overviewPage(ctx, {
        repository,
        parent,
        tags: tags.slice(page.offset, page.offset + page.limit),
        tagPage: page.page,
        moreTags: page.offset + page.limit < tags.length,
        recent,
        tagNames: tags.map((t) => t.name),
        namespaces,
        commit: query(req, 'commit', 64),
      }),
    );
  });

  router.get('/repos/:owner/:repo/tags/:tag/history', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name, tag] = [param(req, 'owner'), param(req, 'repo'), param(req, 'tag')];
    const repository = await repositories.get(principal, owner, name);
    const page = pageOf(req);
    // One more than the page, to know whether another follows.
    const commits = await snapshots.history(principal, owner, name, tag, { limit: page.limit + 1, offset: page.offset });
    send(res, historyPage(ctx, repository, tag, commits.slice(0, page.limit), page.page, commits.length > page.limit));
  });

  router.get('/repos/:owner/:repo/tags/:tag/tree', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name, tag] = [param(req, 'owner'), param(req, 'repo'), param(req, 'tag')];
    const path = query(req, 'path', MAX_PATH).replace(/^\/+|\/+$/g, '');
    const after = query(req, 'after', MAX_PATH) || undefined;
    const { repository, commit } = await snapshots.resolveTag(principal, owner, name, tag);
    // Pages in the API's order (names byte by byte), by cursor: a directory of any size costs a page.
    const { nodes, more } = await snapshots.tree(principal, owner, name, tag, path, { after, limit: TREE_PAGE });
    send(res, treePage(ctx, { repository, tag, commit, path, nodes, after: after ?? null, next: more ? (nodes.at(-1)?.name ?? null) : null }));
  });

  router.get('/repos/:owner/:repo/tags/:tag/file', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name, tag] = [param(req, 'owner'), param(req, 'repo'), param(req, 'tag')];
    const path = query(req, 'path', MAX_PATH).replace(/^\/+/, '');
    if (path === '') throw invalid('name a file with ?path=');
    const repository = await repositories.get(principal, owner, name);
    const file = await snapshots.openFile(principal, owner, name, tag, path);
    const { entry } = file;
    const head = entry.size === 0 ? Buffer.alloc(0) : await readAll(file.read({ start: 0, end: Math.min(entry.size, PREVIEW_BYTES) - 1 }).body);
    send(
      res,
      filePage(ctx, {
        repository,
        tag,
        path,
        size: entry.size,
        mode: entry.mode,
        chunks: entry.chunks.count,
        digest: fileETag(entry).replace(/"/g, ''),
        text: asText(head),
        cut: entry.size > head.length,
      }),
    );
  });

  router.get('/repos/:owner/:repo/tags/:tag/archive', async (req, res) => {
    const { principal } = ui(res);
    const { resolved, body } = await snapshots.exportTar(principal, param(req, 'owner'), param(req, 'repo'), param(req, 'tag'));
    res.setHeader('Content-Type', 'application/x-tar');
    res.setHeader('Content-Disposition', `attachment; filename="${resolved.repository.name}-${resolved.tag.name}.tar"`);
    await streamOut([body], res);
  });

  router.get('/repos/:owner/:repo/network', async (req, res) => {
    const { ctx, principal } = ui(res);
    const network = await forks.network(principal, { owner: param(req, 'owner'), name: param(req, 'repo') }, NETWORK_NODES);
    const { focus } = network;
    const { parent } = await repositories.describe(principal, focus);
    // The asked repository's figures first, then the others in the network's order (nearest first).
    const ordered = [...network.nodes].sort((a, b) => Number(b.repository.id === focus.id) - Number(a.repository.id === focus.id));
    const figures = new Map<number, NodeFigures>();
    for (const { repository } of ordered.slice(0, NETWORK_FIGURES)) figures.set(repository.id, await figuresOf(principal, repository));
    const nodes: GraphNode[] = network.nodes.map(({ repository: r, parentId }) => ({
      id: r.id,
      parentId,
      label: `${r.namespace}/${r.name}`,
      href: ctx.paths.repo(r.namespace, r.name),
      visibility: r.visibility,
      figures: figures.get(r.id) ?? { kind: 'skipped' },
      focus: r.id === focus.id,
    }));
    send(res, networkPage(ctx, { repository: focus, parent, nodes, truncated: network.truncated, maxNodes: NETWORK_NODES, maxFigures: NETWORK_FIGURES }));
  });

  /** A node's figures; `busy` when the stats service turns the request away. */
  async function figuresOf(principal: Principal, repo: Repository): Promise<NodeFigures> {
    try {
      const s = await stats.repository(principal, repo.namespace, repo.name);
      const share = s.fork;
      return share && share.sharedBytes !== null && share.ownBytes !== null
        ? { kind: 'fork', sharedBytes: share.sharedBytes, ownBytes: share.ownBytes }
        : { kind: 'stored', storedBytes: s.storedBytes };
    } catch (e) {
      if (isDomainError(e) && e.kind === 'unavailable') return { kind: 'busy', retryAfterSeconds: Math.ceil(e.retryAfterSeconds ?? 5) };
      throw e;
    }
  }

  router.get('/repos/:owner/:repo/storage', async (req, res) => {
    const { ctx, principal } = ui(res);
    const figures = await stats.repository(principal, param(req, 'owner'), param(req, 'repo'));
    const repository = await repositories.get(principal, param(req, 'owner'), param(req, 'repo'));
    const { parent } = await repositories.describe(principal, repository);
    send(res, repositoryStoragePage(ctx, repository, parent, figures));
  });

  router.post('/repos/:owner/:repo/fork', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name] = [param(req, 'owner'), param(req, 'repo')];
    const visibility = field(req, 'visibility');
    if (visibility !== '' && !isVisibility(visibility)) throw invalid(`visibility must be public, internal or private, not "${visibility}"`);
    const tag = field(req, 'tag');
    const fork = await forks.fork(principal, {
      source: { owner, name },
      targetNamespace: field(req, 'namespace') || undefined,
      name: field(req, 'name') || undefined,
      visibility: (visibility || undefined),
      tags: tag === '' ? undefined : [{ source: tag }],
    });
    redirect(res, ctx.paths.repo(fork.repository.namespace, fork.repository.name), 'forked', `${owner}/${name}`);
  });

  router.post('/repos/:owner/:repo/tags', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name] = [param(req, 'owner'), param(req, 'repo')];
    const { tag } = await snapshots.createTag(principal, owner, name, field(req, 'name'), field(req, 'commit'));
    redirect(res, ctx.paths.repo(owner, name), 'tag-created', tag.name);
  });

  router.post('/repos/:owner/:repo/tags/:tag/delete', async (req, res) => {
    const { ctx, principal } = ui(res);
    const [owner, name, tag] = [param(req, 'owner'), param(req, 'repo'), param(req, 'tag')];
    await snapshots.deleteTag(principal, owner, name, tag);
    redirect(res, ctx.paths.repo(owner, name), 'tag-deleted', tag);
  });

  router.get('/storage', async (_req, res) => {
    const { ctx, principal } = ui(res);
    send(res, storePage(ctx, ctx.viewer.admin ? await stats.storage(principal) : null));
  });

  router.get('/vms', async (req, res) => {
    const { ctx, principal } = ui(res);
    if (principal.kind !== 'user') return send(res, vmsPage(ctx, null, 1, false));
    const page = fixedPage(req, VMS_PAGE);
    const all = await vms.list(principal);
    const rows = [];
    for (const vm of all.slice(page.offset, page.offset + page.limit)) {
      const repository = await repositories.resolve(principal, { id: vm.repositoryId }).catch((e: unknown) => {
        if (isDomainError(e) && e.kind === 'not_found') return null;
        throw e;
      });
      rows.push({ vm, repository });
    }
    send(res, vmsPage(ctx, rows, page.page, page.offset + page.limit < all.length));
  });

  router.post('/vms/:id/:action', async (req, res, next) => {
    const { ctx, principal } = ui(res);
    const id = param(req, 'id');
    const action = param(req, 'action') as VmAction;
    if (!VM_ACTIONS.includes(action)) return next();
    const short = shortId(id);
    switch (action) {
      case 'pause':
      case 'resume':
        await vms.setState(principal, id, action === 'pause' ? 'paused' : 'running');
        return redirect(res, ctx.paths.vms(), action === 'pause' ? 'vm-paused' : 'vm-resumed', short);
      case 'commit': {
        const commit = await vms.commit(principal, id, { keepPaused: false });
        return redirect(res, ctx.paths.vms(), 'vm-committed', commit.id);
      }
      case 'delete':
        await vms.delete(principal, id);
        return redirect(res, ctx.paths.vms(), 'vm-deleted', short);
    }
  });

  router.use((_req, _res, next) => next(new HttpStatusError(404, 'there is no such page')));
  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toHttpError(err);
    recordFailure(res, e.status, err, e.message);
    if (res.headersSent) return void res.destroy();
    for (const [name, value] of Object.entries(e.headers ?? {})) res.setHeader(name, value);
    const locals = res.locals.ui as UiLocals | undefined;
    const ctx = locals?.ctx ?? { paths: pathsOf(req), viewer: { login: null, admin: false }, csrf: null };
    send(res, errorPage({ ...ctx, notice: undefined }, e, requestIdOf(req), backOf(req, ctx)), e.status);
  });

  return router;
}

/** The notice a redirect asked for, as a sentence. */
function noticeOf(req: Request): string | undefined {
  const { notice, subject } = req.query;
  const text = typeof notice === 'string' ? NOTICES[notice] : undefined;
  if (text === undefined) return undefined;
  return text.replace('{}', typeof subject === 'string' ? subject.slice(0, MAX_FIELD) : '');
}

/** Where to go after signing in: a page of the UI, else the catalogue (never another site). */
function safeNext(ctx: PageContext, next: string): string {
  const root = `${ctx.paths.root}/`;
  return next.startsWith(root) && !next.includes('//') && !next.includes('\\') ? next : ctx.paths.home();
}

/** The UI page the browser came from (same origin only), to offer a way back from an error. */
function backOf(req: Request, ctx: PageContext): string | undefined {
  const referer = req.get('referer');
  if (!referer || !URL.canParse(referer)) return undefined;
  const from = new URL(referer);
  const base = new URL(publicBase(req));
  if (from.origin !== base.origin || !from.pathname.startsWith(`${ctx.paths.root}/`)) return undefined;
  from.searchParams.delete('notice');
  from.searchParams.delete('subject');
  return from.pathname + from.search;
}

/** A stream of at most PREVIEW_BYTES, whole. */
async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of body) pieces.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece));
  return Buffer.concat(pieces);
}

/**
 * The bytes as text when they look like text: valid UTF-8 (a character cut at the end of the
 * preview aside) without NUL or other control characters than tab, line feed, carriage return
 * and form feed; null otherwise.
 */
function asText(bytes: Buffer): string | null {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    return null;
  }
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text) ? null : text;
}
