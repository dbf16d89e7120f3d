/**
 * The Vers dialect (seed 001) under /api/v1: repositories and their tags in the organization of
 * the caller's token, the fork (a tag of any readable repository into that organization, with a
 * VM record of the new commit), the public catalogue (no token needed), the commits of the
 * organization, and its VMs (vm-routes.ts).
 */
import { Router, type Request, type Response } from 'express';
import { notFound } from '../../domain/errors.js';
import type { Commit, Page, PageOf, Tag } from '../../domain/model.js';
import { reference } from '../../domain/names.js';
import { ANONYMOUS } from '../../domain/principal.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import type { HttpError } from '../errors.js';
import {
  commitInfoJson,
  commitListJson,
  DEFAULT_COMMIT_LIMIT,
  limitOffset,
  MAX_LIMIT,
  publicRepositoryInfoJson,
  repositoryInfoJson,
  tagInfoJson,
  tagListJson,
} from './mapping.js';
import { versVmRoutes } from './vm-routes.js';

interface ForkRepositoryRequest {
  source_org: string;
  source_repo: string;
  source_tag: string;
  repo_name?: string | null;
  tag_name?: string | null;
}

/** Branches by ref and by VM answer errors in their own envelope, as Vers does. */
const BRANCH_ERROR_PATHS = /^\/api\/v1\/vm\/branch\/by_(ref|vm)\//;

/** Vers' error envelope, which the whole native /api/v1 shares, but for two branch calls' `{vms: [], error}`. */
export const versErrorBody = (e: HttpError, path: string) =>
  BRANCH_ERROR_PATHS.test(path) ? { vms: [], error: e.message } : { error: e.message, success: false, ...(e.details ? { details: e.details } : {}) };

export const versDialect: Dialect = { name: 'vers', prefix: '/api/v1', routes: versRoutes, errorBody: versErrorBody };

const param = (req: Request, name: string): string => String(req.params[name]);

function versRoutes(services: Services): Router {
  const { accounts, repositories, snapshots, forks } = services;
  const router = Router();

  /** The organization Vers calls act in: the token's `org` claim, else the caller's own namespace. */
  const org = async (res: Response) => (await accounts.actingNamespace(principalOf(res))).name;

  const sendCommits = async (res: Response, { items, total }: PageOf<Commit>, page: Page) =>
    void res.json(commitListJson(await snapshots.withOwners(items), total, page));

  router.post('/repositories/fork', async (req, res) => {
    const body = req.body as ForkRepositoryRequest;
    // Vers repositories are private unless made public, forks included.
    const fork = await forks.fork(principalOf(res), {
      source: { owner: body.source_org, name: body.source_repo },
      tags: [{ source: body.source_tag, target: body.tag_name }],
      name: body.repo_name,
      visibility: 'private',
      withVm: true,
    });
    const [tag] = fork.tags as [Tag];
    res.status(201).json({
      vm_id: fork.vm?.id,
      commit_id: tag.commitId,
      repo_name: fork.repository.name,
      tag_name: tag.name,
      reference: reference(fork.repository.name, tag.name),
    });
  });

  router.get('/repositories', async (req, res) => {
    const page = limitOffset(req, MAX_LIMIT);
    const { items, total } = await repositories.list(principalOf(res), await org(res), page);
    res.setHeader('X-Total-Count', String(total));
    res.json({ repositories: items.map(repositoryInfoJson) });
  });

  router.post('/repositories', async (req, res) => {
    const body = req.body as { name: string; description?: string | null };
    // Vers creates every repository private; PATCH .../visibility publishes it.
    const repo = await repositories.create(principalOf(res), await org(res), {
      name: body.name,
      description: body.description ?? '',
      visibility: 'private',
    });
    res.status(201).json({ repo_id: repo.uuid, name: repo.name });
  });

  router.get('/repositories/:repo', async (req, res) => {
    res.json(repositoryInfoJson(await repositories.get(principalOf(res), await org(res), param(req, 'repo'))));
  });

  router.delete('/repositories/:repo', async (req, res) => {
    await repositories.delete(principalOf(res), await org(res), param(req, 'repo'));
    res.status(204).end();
  });

  router.patch('/repositories/:repo/visibility', async (req, res) => {
    const { is_public } = req.body as { is_public: boolean };
    await repositories.update(principalOf(res), await org(res), param(req, 'repo'), { visibility: is_public ? 'public' : 'private' });
    res.status(204).end();
  });

  router.get('/repositories/:repo/tags', async (req, res) => {
    const { repository, tags } = await snapshots.listTags(principalOf(res), await org(res), param(req, 'repo'));
    res.json(tagListJson(repository, tags));
  });

  router.post('/repositories/:repo/tags', async (req, res) => {
    const body = req.body as { tag_name: string; commit_id: string; description?: string | null };
    const { repository, tag } = await snapshots.createTag(
      principalOf(res),
      await org(res),
      param(req, 'repo'),
      body.tag_name,
      body.commit_id,
      body.description ?? '',
    );
    res.status(201).json({ tag_id: tag.id, commit_id: tag.commitId, reference: reference(repository.name, tag.name) });
  });

  router.get('/repositories/:repo/tags/:tag', async (req, res) => {
    const { repository, tag } = await snapshots.resolveTag(principalOf(res), await org(res), param(req, 'repo'), param(req, 'tag'));
    res.json(tagInfoJson(repository, tag));
  });

  router.patch('/repositories/:repo/tags/:tag', async (req, res) => {
    const body = req.body as { commit_id?: string | null; description?: string | null };
    // Vers: an absent or null commit_id leaves the tag where it is; a null description clears it.
    await snapshots.updateTag(principalOf(res), await org(res), param(req, 'repo'), param(req, 'tag'), {
      commitId: body.commit_id ?? undefined,
      description: body.description === null ? '' : body.description,
    });
    res.status(204).end();
  });

  router.delete('/repositories/:repo/tags/:tag', async (req, res) => {
    await snapshots.deleteTag(principalOf(res), await org(res), param(req, 'repo'), param(req, 'tag'));
    res.status(204).end();
  });

  // The public catalogue is what an anonymous caller may read, whoever asks.
  router.get('/public/repositories', async (req, res) => {
    const { items, total } = await repositories.listPublic(limitOffset(req, MAX_LIMIT));
    res.setHeader('X-Total-Count', String(total));
    res.json({ repositories: items.map(publicRepositoryInfoJson) });
  });

  router.get('/public/repositories/:org/:repo', async (req, res) => {
    res.json(publicRepositoryInfoJson(await repositories.get(ANONYMOUS, param(req, 'org'), param(req, 'repo'))));
  });

  router.get('/public/repositories/:org/:repo/tags', async (req, res) => {
    const { repository, tags } = await snapshots.listTags(ANONYMOUS, param(req, 'org'), param(req, 'repo'));
    res.json(tagListJson(repository, tags));
  });

  router.get('/public/repositories/:org/:repo/tags/:tag', async (req, res) => {
    const { repository, tag } = await snapshots.resolveTag(ANONYMOUS, param(req, 'org'), param(req, 'repo'), param(req, 'tag'));
    res.json(tagInfoJson(repository, tag));
  });

  router.get('/commits', async (req, res) => {
    const page = limitOffset(req, DEFAULT_COMMIT_LIMIT);
    const principal = principalOf(res);
    await sendCommits(res, await snapshots.namespaceCommits(principal, await accounts.actingNamespace(principal), page), page);
  });

  router.get('/commits/public', async (req, res) => {
    // Public commits are readable by anyone, yet Vers lists them to signed-in callers only.
    services.policy.requireUser(principalOf(res));
    const page = limitOffset(req, DEFAULT_COMMIT_LIMIT);
    await sendCommits(res, await snapshots.publicCommits(page), page);
  });

  router.patch('/commits/:commit_id', async (req, res) => {
    const body = req.body as { is_public: boolean; name?: string | null; description?: string | null };
    const commit = await snapshots.updateCommit(principalOf(res), param(req, 'commit_id'), {
      isPublic: body.is_public,
      title: body.name,
      description: body.description === null ? '' : body.description,
    });
    const [owned] = await snapshots.withOwners([commit]);
    if (!owned) throw notFound(`commit ${commit.id} not found`);
    res.json(commitInfoJson(owned));
  });

  router.delete('/commits/:commit_id', async (req, res) => {
    await snapshots.deleteCommit(principalOf(res), param(req, 'commit_id'));
    res.status(204).end();
  });

  router.use(versVmRoutes(services));
  return router;
}
