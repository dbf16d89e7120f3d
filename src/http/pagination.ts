import type { Request, Response } from 'express';
import type { Page } from '../domain/model.js';
import { publicBase } from './public-url.js';

export const DEFAULT_PER_PAGE = 30;
export const MAX_PER_PAGE = 100;

/** `page` (from 1) and `per_page` query parameters as a limit and offset. */
export function pageOf(req: Request): Page & { page: number } {
  const page = Math.max(1, Number(req.query.page ?? 1) || 1);
  const limit = Math.min(MAX_PER_PAGE, Math.max(1, Number(req.query.per_page ?? DEFAULT_PER_PAGE) || DEFAULT_PER_PAGE));
  return { page, limit, offset: (page - 1) * limit };
}

/** Absolute URLs (publicBase) of the neighbouring pages of this request (absent where there is none). */
export function pageLinks(req: Request, page: Page & { page: number }, total: number) {
  const last = Math.max(1, Math.ceil(total / page.limit));
  const url = new URL(`${publicBase(req)}${req.originalUrl}`);
  const to = (n: number) => {
    url.searchParams.set('page', String(n));
    url.searchParams.set('per_page', String(page.limit));
    return url.toString();
  };
  return {
    lastPage: last,
    first: to(1),
    last: to(last),
    next: page.page < last ? to(page.page + 1) : undefined,
    prev: page.page > 1 ? to(Math.min(page.page - 1, last)) : undefined,
  };
}

/** An RFC 8288 `Link` header value from page links, in GitHub's order. */
export function linkHeader(links: ReturnType<typeof pageLinks>): string {
  const parts: string[] = [];
  if (links.next) parts.push(`<${links.next}>; rel="next"`, `<${links.last}>; rel="last"`);
  if (links.prev) parts.push(`<${links.first}>; rel="first"`, `<${links.prev}>; rel="prev"`);
  return parts.join(', ');
}

/** Sets `X-Total-Count` and a `Link` header with absolute URLs, as Gitea and GitHub do. */
export function setPageHeaders(req: Request, res: Response, page: Page & { page: number }, total: number): void {
  res.setHeader('X-Total-Count', String(total));
  const link = linkHeader(pageLinks(req, page, total));
  if (link) res.setHeader('Link', link);
}
