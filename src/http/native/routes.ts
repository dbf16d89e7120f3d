/**
 * The native resource API under /api/v1, in the Gitea/GitHub shape
 * (`/api/v1/repos/{owner}/{repo}`): accounts, repositories, tags, snapshots and commits; delta
 * transfer (transfer-routes.ts) and site administration under /api/v1/admin (admin-routes.ts).
 */
import { Router, type Request, type Response } from 'express';
import type { Config } from '../../config.js';
import type { Repository, Role } from '../../domain/model.js';
import type { Principal } from '../../domain/principal.js';
import type { CreateRepositoryInput } from '../../domain/repository.service.js';
import type { Services } from '../../domain/services.js';
import { createZstdCompressStream } from '../../lib/zstd.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import { versErrorBody } from '../vers/routes.js';
import { pageOf, pagingInteger, setNextLink, setPageHeaders } from '../pagination.js';
import { publicBase } from '../public-url.js';
import { commitJson, orgJson, pushJson, quotaLimitsInput, quotaReportJson, repositoryJson, repositoryStatsJson, tagJson, treeJson } from './mapping.js';
import { fileETag, parseRange } from './ranges.js';
import { decodedBody, prefersZstd, streamOut } from './streams.js';
import { adminRoutes } from './admin-routes.js';
import { transferRoutes } from './transfer-routes.js';

const param = (req: Request, name: string): string => String(req.params[name]);

/**
 * Children a page of a directory listing holds at most, and by default: a directory of up to
 * this many reads as one page, as it did before listings were paged.
 */
const MAX_TREE_PAGE = 1000;

export const nativeDialect: Dialect = { name: 'native', prefix: '/api/v1', routes: nativeRoutes, errorBody: versErrorBody };

function nativeRoutes(services: Services, config: Config): Router {
  const { accounts, repositories, snapshots } = services;
  const router = Router();
  router.use(transferRoutes(services));
  router.use('/admin', adminRoutes(services));

  const repoJson = async (req: Request, principal: Principal, repo: Repository) =>
    repositoryJson(publicBase(req), await repositories.describe(principal, repo));

  router.get('/user', async (_req, res) => {
    const { user, orgs } = await accounts.me(principalOf(res));
    res.json({
      id: user.id,
      login: user.name,
      type: 'User',
      created_at: user.createdAt,
      orgs: orgs.map(({ org, role }) => ({ id: org.id, name: org.name, role })),
    });
  });

  router.get('/namespaces/:owner/quota', async (req, res) => {
    res.json(quotaReportJson(await services.quotas.report(principalOf(res), param(req, 'owner'))));
  });
  router.put('/namespaces/:owner/quota', async (req, res) => {
    const report = await services.quotas.set(principalOf(res), param(req, 'owner'), quotaLimitsInput(req.body as Parameters<typeof quotaLimitsInput>[0]));
    res.json(quotaReportJson(report));
  });

  router.post('/orgs', async (req, res) => {
    const { name } = req.body as { name: string };
    res.status(201).json(orgJson(await accounts.createOrg(principalOf(res), name)));
  });

  router.put('/orgs/:org/members/:login', async (req, res) => {
    const org = param(req, 'org');
    const login = param(req, 'login');
    const { role } = req.body as { role: Role };
    await accounts.setMember(principalOf(res), org, login, role);
    res.json({ org, login, role });
  });

  const createIn = (owner: (req: Request, res: Response) => string) => async (req: Request, res: Response) => {
    const principal = principalOf(res);
    const repo = await repositories.create(principal, owner(req, res), req.body as CreateRepositoryInput);
    res.status(201).json(await repoJson(req, principal, repo));
  };
  router.post('/user/repos', createIn((_req, res) => services.policy.requireUser(principalOf(res)).login));
  router.post('/orgs/:org/repos', async (req, res, next) => {
    await accounts.getOrg(param(req, 'org'));
    return createIn((r) => param(r, 'org'))(req, res).catch(next);
  });

  const listIn = (ownerParam: string, orgsOnly: boolean) => async (req: Request, res: Response) => {
    const owner = param(req, ownerParam);
    if (orgsOnly) await accounts.getOrg(owner);
    const principal = principalOf(res);
    const page = pageOf(req);
    const { items, total } = await repositories.list(principal, owner, page);
    setPageHeaders(req, res, page, total);
    res.json(await Promise.all(items.map((r) => repoJson(req, principal, r))));
  };
  router.get('/users/:owner/repos', listIn('owner', false));
  router.get('/orgs/:org/repos', listIn('org', true));

  router.get('/repos/:owner/:repo', async (req, res) => {
    const principal = principalOf(res);
    res.json(await repoJson(req, principal, await repositories.get(principal, param(req, 'owner'), param(req, 'repo'))));
  });

  router.get('/repos/:owner/:repo/stats', async (req, res) => {
    res.json(repositoryStatsJson(await services.stats.repository(principalOf(res), param(req, 'owner'), param(req, 'repo'))));
  });

  router.patch('/repos/:owner/:repo', async (req, res) => {
    const principal = principalOf(res);
    const body = req.body as { description?: string; visibility?: Repository['visibility']; archived?: boolean; default_tag?: string | null; name?: string };
    const repo = await repositories.update(principal, param(req, 'owner'), param(req, 'repo'), {
      description: body.description,
      visibility: body.visibility,
      archived: body.archived,
      defaultTag: body.default_tag,
      name: body.name,
    });
    res.json(await repoJson(req, principal, repo));
  });

  router.delete('/repos/:owner/:repo', async (req, res) => {
    await repositories.delete(principalOf(res), param(req, 'owner'), param(req, 'repo'));
    res.status(204).end();
  });

  router.post('/repos/:owner/:repo/restore', async (req, res) => {
    const principal = principalOf(res);
    const repo = await repositories.restore(principal, param(req, 'owner'), param(req, 'repo'));
    res.json(await repoJson(req, principal, repo));
  });

  router.get('/repos/:owner/:repo/tags', async (req, res) => {
    const { repository, tags } = await snapshots.listTags(principalOf(res), param(req, 'owner'), param(req, 'repo'));
    res.json(tags.map((t) => tagJson(repository, t)));
  });

  router.get('/repos/:owner/:repo/tags/:tag', async (req, res) => {
    const { repository, tag } = await snapshots.resolveTag(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'));
    res.json(tagJson(repository, tag));
  });

  router.delete('/repos/:owner/:repo/tags/:tag', async (req, res) => {
    await snapshots.deleteTag(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'));
    res.status(204).end();
  });

  router.put('/repos/:owner/:repo/tags/:tag/archive', async (req, res) => {
    const message = typeof req.query.message === 'string' ? req.query.message : undefined;
    const result = await snapshots.push(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'), decodedBody(req), {
      message,
      maxBytes: config.maxPushBytes,
    });
    res.status(201).json(pushJson(result));
  });

  router.get('/repos/:owner/:repo/tags/:tag/archive', async (req, res) => {
    const { resolved, body } = await snapshots.exportTar(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'));
    const zstd = prefersZstd(req, 'application/x-tar');
    res.setHeader('Content-Type', zstd ? 'application/zstd' : 'application/x-tar');
    res.setHeader('ETag', `"${resolved.commit.id}"`);
    res.setHeader('X-Snapfork-Commit', resolved.commit.id);
    res.setHeader('Content-Disposition', `attachment; filename="${resolved.repository.name}-${resolved.tag.name}.tar${zstd ? '.zst' : ''}"`);
    await streamOut(zstd ? [body, createZstdCompressStream()] : [body], res);
  });

  router.get('/repos/:owner/:repo/tags/:tag/tree', async (req, res) => {
    const path = ((req.query.path as string | undefined) ?? '').replace(/^\/+|\/+$/g, '');
    const after = typeof req.query.after === 'string' ? req.query.after : undefined;
    const limit = Math.min(MAX_TREE_PAGE, Math.max(1, pagingInteger(req, 'per_page', MAX_TREE_PAGE)));
    const { nodes, more } = await snapshots.tree(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'), path, { after, limit });
    if (more) setNextLink(req, res, nodes.at(-1)!.name);
    res.json(nodes.map(treeJson));
  });

  router.get('/repos/:owner/:repo/tags/:tag/files/*path', async (req, res) => {
    const segments = req.params.path;
    const path = segments.join('/');
    const file = await snapshots.openFile(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'tag'), path);
    const { size } = file.entry;
    const etag = fileETag(file.entry);
    res.setHeader('ETag', etag);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', 'application/octet-stream');
    if (req.get('if-none-match') === etag) return void res.status(304).end();
    const range = parseRange(req.get('range'), size, req.get('if-range'), etag);
    const read = file.read(range);
    if (range) res.status(206).setHeader('Content-Range', `bytes ${read.start}-${read.end}/${size}`);
    res.setHeader('Content-Length', String(size === 0 ? 0 : read.end - read.start + 1));
    await streamOut([read.body], res);
  });

  router.get('/repos/:owner/:repo/commits', async (req, res) => {
    const page = pageOf(req);
    const tag = typeof req.query.tag === 'string' ? req.query.tag : undefined;
    const commits = await snapshots.history(principalOf(res), param(req, 'owner'), param(req, 'repo'), tag, page);
    res.json(commits.map(commitJson));
  });

  router.get('/repos/:owner/:repo/commits/:commit_id', async (req, res) => {
    const commit = await snapshots.getCommit(principalOf(res), param(req, 'owner'), param(req, 'repo'), param(req, 'commit_id'));
    res.json(commitJson(commit));
  });

  return router;
}
