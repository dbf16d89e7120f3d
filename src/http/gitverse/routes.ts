/**
 * The GitVerse dialect (seed 004), GitHub-shaped and mounted at the root so that GitHub clients
 * (octokit with `baseUrl` set to this server, PyGithub) work unchanged: repositories, their forks,
 * and the owners and collections their URLs point at.
 */
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { isDomainError } from '../../domain/errors.js';
import type { PageOf, Repository } from '../../domain/model.js';
import type { Principal } from '../../domain/principal.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import { HttpStatusError, type HttpError } from '../errors.js';
import { linkHeader, pageLinks, pageOf } from '../pagination.js';
import { publicBase } from '../public-url.js';
import { jsonBody, MAX_PARSED_BODY } from '../request-limits.js';
import { ownerJson, repositoryJson, type RepositoryFacts } from './mapping.js';

interface CreateForkRequest {
  name?: string;
  description?: string;
  organization?: string;
  /** GitHub's: fork only the default branch, here the default tag. */
  default_branch_only?: boolean;
}

const DOCUMENTATION_URL = 'https://gitverse.ru/docs/public-api';

/** GitHub's envelope: clients read `message`; a 404 never says what was missing. */
export function gitverseErrorBody(e: HttpError) {
  if (e.status === 404) return { message: 'Not Found', documentation_url: DOCUMENTATION_URL };
  if (e.status === 422) {
    return { message: 'Validation Failed', errors: [{ resource: 'Repository', code: 'custom', message: e.message }], documentation_url: DOCUMENTATION_URL };
  }
  return { message: e.message, documentation_url: DOCUMENTATION_URL };
}

/**
 * GitHub reads a request body as JSON whatever its Content-Type, and GitVerse's own example
 * (`curl -d '{"organization": ...}'` without a Content-Type) arrives form-encoded: read such
 * bodies of /repos/ writes as JSON, and say so to the validator.
 */
const jsonWhateverTheType = jsonBody(MAX_PARSED_BODY, () => true);
const readBodyAsJson: RequestHandler = (req, res, next) => {
  const formOrNone = !req.is('application/json') && (req.headers['content-type'] === undefined || req.is('application/x-www-form-urlencoded'));
  if (!req.path.startsWith('/repos/') || req.method === 'GET' || !formOrNone) return next();
  if (req.headers['content-length'] === '0' || (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)) return next();
  req.headers['content-type'] = 'application/json';
  jsonWhateverTheType(req, res, next);
};

export const gitverseDialect: Dialect = {
  name: 'gitverse',
  prefix: '',
  // GitHub's paths; every other path at the root is snapfork's own.
  paths: ['/repos', '/users', '/avatars'],
  routes: gitverseRoutes,
  errorBody: gitverseErrorBody,
  bodyParsers: [readBodyAsJson],
};

/** Asked for in `Accept` (with `;version=latest`), answered as the same JSON under this type. */
const OBJECT_MEDIA_TYPE = 'application/vnd.gitverse.object+json';

const param = (req: Request, name: string): string => String(req.params[name]);

function send(req: Request, res: Response, status: number, body: unknown): void {
  if ((req.get('accept') ?? '').toLowerCase().includes(OBJECT_MEDIA_TYPE)) {
    res.setHeader('Content-Type', `${OBJECT_MEDIA_TYPE};version=latest`);
  }
  res.status(status).json(body);
}

function gitverseRoutes(services: Services): Router {
  const { accounts, forks, policy, repositories, snapshots } = services;
  const router = Router();

  const factsOf = async (principal: Principal, repo: Repository, withParent: boolean): Promise<RepositoryFacts> => {
    const { owner, parent } = await repositories.describe(principal, repo);
    const role = await policy.roleIn(principal, repo.namespaceId);
    const { bytes, lastCommitAt } = await snapshots.footprint(repo);
    return {
      repository: repo,
      owner,
      parent: parent && withParent ? await factsOf(principal, parent, false) : null,
      forks: await forks.countForks(principal, repo),
      bytes,
      lastCommitAt,
      permissions: { admin: role === 'owner', push: role !== undefined, pull: await policy.canRead(principal, repo) },
    };
  };

  const sendRepository = async (req: Request, res: Response, status: number, repo: Repository) => {
    const principal = principalOf(res);
    send(req, res, status, repositoryJson(publicBase(req), await factsOf(principal, repo, true)));
  };

  /** A page of repositories with GitHub's absolute `Link` to the next and last pages. */
  const sendPage = async (req: Request, res: Response, page: ReturnType<typeof pageOf>, { items, total }: PageOf<Repository>) => {
    const principal = principalOf(res);
    const link = linkHeader(pageLinks(req, page, total));
    if (link) res.setHeader('Link', link);
    const base = publicBase(req);
    send(req, res, 200, await Promise.all(items.map(async (r) => repositoryJson(base, await factsOf(principal, r, true)))));
  };

  const readable = (req: Request, res: Response) => repositories.get(principalOf(res), param(req, 'owner'), param(req, 'repo'));

  router.get('/repos/:owner/:repo', async (req, res) => {
    await sendRepository(req, res, 200, await readable(req, res));
  });

  router.get('/repos/:owner/:repo/forks', async (req, res) => {
    const page = pageOf(req);
    const forksPage = await forks.listForks(
      principalOf(res),
      { owner: param(req, 'owner'), name: param(req, 'repo') },
      // There are no stars or watchers: those orders are the default, newest first.
      { limit: page.limit, offset: page.offset, orderBy: 'created_at', sort: req.query.sort === 'oldest' ? 'asc' : 'desc' },
    );
    await sendPage(req, res, page, forksPage);
  });

  router.post('/repos/:owner/:repo/forks', async (req, res) => {
    const principal = principalOf(res);
    // Who is asking comes before what they asked for: 401 before a 400 on the organization.
    const caller = policy.requireUser(principal);
    const body = (req.body ?? {}) as CreateForkRequest;
    if (body.organization !== undefined) {
      await accounts.getOrg(body.organization).catch((e: unknown) => {
        throw isDomainError(e) && e.kind === 'not_found' ? new HttpStatusError(400, e.message) : e;
      });
    }
    const source = { owner: param(req, 'owner'), name: param(req, 'repo') };
    let tags: { source: string }[] | undefined;
    if (body.default_branch_only) {
      const { defaultTag } = await repositories.resolve(principal, source);
      tags = defaultTag === null ? [] : [{ source: defaultTag }];
    }
    const fork = await forks.fork(principal, {
      source,
      tags,
      targetNamespace: body.organization ?? caller.login,
      name: body.name,
      description: body.description,
    });
    await sendRepository(req, res, 201, fork.repository);
  });

  // Collections snapfork does not have, so that every URL of a repository answers.
  const empty = (body: unknown) => async (req: Request, res: Response) => {
    await readable(req, res);
    send(req, res, 200, body);
  };
  router.get('/repos/:owner/:repo/issues', empty([]));
  router.get('/repos/:owner/:repo/issues/comments', empty([]));
  router.get('/repos/:owner/:repo/pulls', empty([]));
  router.get('/repos/:owner/:repo/languages', empty({}));

  router.get('/users/:login', async (req, res) => {
    send(req, res, 200, ownerJson(publicBase(req), await accounts.getNamespace(param(req, 'login'))));
  });

  router.get('/users/:login/repos', async (req, res) => {
    const page = pageOf(req);
    await sendPage(req, res, page, await repositories.list(principalOf(res), param(req, 'login'), page));
  });

  // Nobody follows anybody, and memberships are never public (GitHub lists only public ones).
  router.get(['/users/:login/followers', '/users/:login/following', '/users/:login/orgs'], async (req, res) => {
    await accounts.getNamespace(param(req, 'login'));
    send(req, res, 200, []);
  });

  router.get('/avatars/:login', async (req, res) => {
    const { name } = await accounts.getNamespace(param(req, 'login'));
    // Names are letters, digits, `-`, `_` and `.`: nothing to escape in SVG.
    res.type('image/svg+xml').send(
      `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" fill="#5b6ee1"/><text x="32" y="43" font-family="sans-serif" font-size="32" text-anchor="middle" fill="#fff">${name.charAt(0).toUpperCase()}</text></svg>`,
    );
  });

  return router;
}
