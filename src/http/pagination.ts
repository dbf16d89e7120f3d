import type { Request, Response } from 'express';
import type { Page } from '../domain/model.js';

export const DEFAULT_PER_PAGE = 30;
export const MAX_PER_PAGE = 100;

/** `page` (from 1) and `per_page` query parameters as a limit and offset. */
export function pageOf(req: Request): Page & { page: number } {
  const page = Math.max(1, Number(req.query.page ?? 1) || 1);
  const limit = Math.min(MAX_PER_PAGE, Math.max(1, Number(req.query.per_page ?? DEFAULT_PER_PAGE) || DEFAULT_PER_PAGE));
  return { page, limit, offset: (page - 1) * limit };
}

/** Sets `X-Total-Count` and an RFC 8288 `Link` header with absolute URLs, as Gitea and GitHub do. */
export function setPageHeaders(req: Request, res: Response, page: Page & { page: number }, total: number): void {
  res.setHeader('X-Total-Count', String(total));
  const last = Math.max(1, Math.ceil(total / page.limit));
  const url = new URL(req.originalUrl, `${req.protocol}://${req.get('host')}`);
  const link = (n: number, rel: string) => {
    url.searchParams.set('page', String(n));
    url.searchParams.set('per_page', String(page.limit));
    return `<${url.toString()}>; rel="${rel}"`;
  };
  const links: string[] = [];
  if (page.page < last) links.push(link(page.page + 1, 'next'), link(last, 'last'));
  if (page.page > 1) links.push(link(1, 'first'), link(page.page - 1, 'prev'));
  if (links.length > 0) res.setHeader('Link', links.join(', '));
}
