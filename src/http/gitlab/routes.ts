/**
 * The GitLab dialect (seed 003) under /api/v4: fork a project, list its forks, read it (the
 * polling endpoint of a fork), and link or unlink a fork relationship after the fact.
 */
import { Router, type Request, type Response } from 'express';
import { isDomainError } from '../../domain/errors.js';
import type { Namespace, Page, Repository } from '../../domain/model.js';
import type { Principal } from '../../domain/principal.js';
import type { RepositoryRef } from '../../domain/repository.service.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import { HttpStatusError, type HttpError } from '../errors.js';
import { requestIdOf } from '../logging.js';
import { pageLinks, pageOf } from '../pagination.js';
import { publicBase } from '../public-url.js';
import { formBody } from '../request-limits.js';
import {
  ACCESS_LEVEL,
  asksForAbsentFeature,
  flag,
  forkFilters,
  forkInputOf,
  projectJson,
  projectRef,
  simpleProjectJson,
  targetRef,
  validationErrors,
  type ForksQueryString,
  type GitlabForkBody,
} from './mapping.js';

/**
 * GitLab's envelopes: parameter validation is Grape's `{"error": "..."}`; everything else is
 * `{"message": ...}` in GitLab's words (`404 Project Not Found`, `403 Forbidden - reason`).
 */
export function gitlabErrorBody(e: HttpError): object {
  switch (e.status) {
    case 400:
    case 415:
      return { error: e.message };
    case 401:
      return { message: '401 Unauthorized' };
    case 403:
      return { message: `403 Forbidden - ${e.message}` };
    case 404:
      return { message: e.message.startsWith('404 ') ? e.message : '404 Not Found' };
    case 405:
      return { error: '405 Not Allowed' };
    default:
      return { message: e.status >= 500 ? '500 Internal Server Error' : e.message };
  }
}

export const gitlabDialect: Dialect = {
  name: 'gitlab',
  prefix: '/api/v4',
  routes: gitlabRoutes,
  errorBody: gitlabErrorBody,
  // GitLab also takes form-encoded bodies (curl -d, python-gitlab's some calls).
  bodyParsers: [formBody()],
};

/** Awaits a domain call, answering GitLab's `404 <what> Not Found` when it finds nothing. */
async function found<T>(what: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    if (isDomainError(e) && e.kind === 'not_found') throw new HttpStatusError(404, `404 ${what} Not Found`);
    throw e;
  }
}

const PROJECT_NOT_FOUND = '404 Project Not Found';

/** A project reference from a path parameter; a malformed one names no project. */
function refParam(req: Request, name: string): RepositoryRef {
  const ref = projectRef(String(req.params[name]));
  if (!ref) throw new HttpStatusError(404, PROJECT_NOT_FOUND);
  return ref;
}

function gitlabRoutes(services: Services): Router {
  const { accounts, forks, policy, repositories } = services;
  const router = Router();

  const resolveProject = (principal: Principal, req: Request) => found('Project', repositories.resolve(principal, refParam(req, 'id')));

  const facts = async (principal: Principal, repo: Repository, base: string) => ({
    view: await repositories.describe(principal, repo),
    forksCount: await forks.countForks(principal, repo),
    base,
  });

  const simple = async (principal: Principal, repo: Repository, base: string) => simpleProjectJson(await facts(principal, repo, base));

  const full = async (principal: Principal, repo: Repository, base: string) => {
    const f = await facts(principal, repo, base);
    return projectJson(f, f.view.parent && (await simple(principal, f.view.parent, base)));
  };

  const targetNamespace = async (body: GitlabForkBody): Promise<Namespace | undefined> => {
    const ref = targetRef(body);
    if (ref === undefined) return undefined;
    return found('Namespace', 'id' in ref ? accounts.getNamespaceById(ref.id) : accounts.getNamespace(ref.path));
  };

  /** The namespaces `owned`, `membership` and `min_access_level` narrow forks to; [] for none. */
  const memberNamespaces = async (principal: Principal, q: ForksQueryString): Promise<number[] | undefined> => {
    const level = q.min_access_level === undefined ? undefined : Number(q.min_access_level);
    const owned = flag(q.owned) === true || (level !== undefined && level > ACCESS_LEVEL.member);
    if (!owned && flag(q.membership) !== true && level === undefined) return undefined;
    if (principal.kind !== 'user' || (level !== undefined && level > ACCESS_LEVEL.owner)) return [];
    return (await forks.namespacesOf(principal, owned)).map((ns) => ns.id);
  };

  router.get('/projects/:id', async (req, res) => {
    const principal = principalOf(res);
    const repo = await resolveProject(principal, req);
    res.json(await full(principal, repo, publicBase(req)));
  });

  router.post('/projects/:id/fork', async (req, res) => {
    const principal = principalOf(res);
    // Writes need a signed-in caller before anything else, as GitLab's authenticate_non_get!.
    policy.requireUser(principal);
    const body = (req.body ?? {}) as GitlabForkBody;
    const source = await resolveProject(principal, req);
    const target = await targetNamespace(body);
    try {
      // Source and target are resolved already: what is left to miss is a branch (tag).
      const fork = await found('Source Branch', forks.fork(principal, forkInputOf(source, body, target)));
      res.status(201).json(await full(principal, fork.repository, publicBase(req)));
    } catch (e) {
      // GitLab's fork API answers a failed model validation 409 with the errors hash
      // (`conflict!(project.errors.messages)`); other failures keep their usual answer.
      const errors = validationErrors(e);
      if (!errors) throw e;
      res.status(409).json({ message: errors, request_id: requestIdOf(req) });
    }
  });

  router.get('/projects/:id/forks', async (req, res) => {
    const principal = principalOf(res);
    const q = req.query as ForksQueryString;
    const source = await resolveProject(principal, req);
    const page = pageOf(req);
    const namespaceIds = await memberNamespaces(principal, q);
    const { items, total } =
      asksForAbsentFeature(q) || namespaceIds?.length === 0
        ? { items: [], total: 0 }
        : await forks.listForks(principal, { id: source.id }, { ...forkFilters(q), namespaceIds, ...page });
    setGitlabPageHeaders(req, res, page, total);
    const base = publicBase(req);
    // `statistics` has no effect: storage is shared between forks by content, so GitLab's
    // per-project sizes have no truthful value here.
    const present = flag(q.simple) === true ? simple : full;
    res.json(await Promise.all(items.map((r) => present(principal, r, base))));
  });

  router.post('/projects/:id/fork/:forked_from_id', async (req, res) => {
    const principal = principalOf(res);
    const linked = await found('Project', forks.link(principal, refParam(req, 'id'), refParam(req, 'forked_from_id')));
    res.status(201).json(await full(principal, linked, publicBase(req)));
  });

  router.delete('/projects/:id/fork', async (req, res) => {
    const unlinked = await found('Project', forks.unlink(principalOf(res), refParam(req, 'id')));
    // 304 when there was no relationship to remove, as GitLab answers.
    res.status(unlinked ? 204 : 304).end();
  });

  return router;
}

/** GitLab's offset-pagination headers; `X-Next-Page`/`X-Prev-Page` are empty when there is none. */
function setGitlabPageHeaders(req: Request, res: Response, page: Page & { page: number }, total: number): void {
  const links = pageLinks(req, page, total);
  res.setHeader('X-Total', String(total));
  res.setHeader('X-Total-Pages', String(links.lastPage));
  res.setHeader('X-Page', String(page.page));
  res.setHeader('X-Per-Page', String(page.limit));
  res.setHeader('X-Next-Page', links.next ? String(page.page + 1) : '');
  res.setHeader('X-Prev-Page', links.prev ? String(Math.min(page.page - 1, links.lastPage)) : '');
  const rels = { prev: links.prev, next: links.next, first: links.first, last: links.last };
  res.setHeader('Link', Object.entries(rels).filter(([, url]) => url).map(([rel, url]) => `<${url}>; rel="${rel}"`).join(', '));
}
