import type { Request, Response } from 'express';
import { invalid } from '../domain/errors.js';
import type { Page } from '../domain/model.js';
import { publicBase } from './public-url.js';

export const DEFAULT_PER_PAGE = 30;
export const MAX_PER_PAGE = 100;
/**
 * The bound of every paging parameter (`page`, `per_page`, `limit`, `offset`; the contract says
 * so too): the int32 range clients send. With at most 1000 rows a page, an offset computed
 * from it stays an integer that SQLite and a JS number hold exactly.
 */
export const MAX_PAGING_INTEGER = 2 ** 31 - 1;

/** An integer query parameter of at most MAX_PAGING_INTEGER either way; 400 otherwise. */
export function pagingInteger(req: Request, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || Math.abs(value) > MAX_PAGING_INTEGER) {
    throw invalid(`query ${name} must be an integer of at most ${MAX_PAGING_INTEGER}`);
  }
  return value;
}

/**
 * `page` (from 1) and `per_page` query parameters as a limit and offset. As GitHub and GitLab,
 * a page below 1 is the first and a larger `per_page` is MAX_PER_PAGE.
 */
export function pageOf(req: Request): Page & { page: number } {
  const page = Math.max(1, pagingInteger(req, 'page', 1));
  const limit = Math.min(MAX_PER_PAGE, Math.max(1, pagingInteger(req, 'per_page', DEFAULT_PER_PAGE) || DEFAULT_PER_PAGE));
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

/**
 * Sets a `Link` header to the next page of a listing paged by a cursor (GitHub's rel="next"):
 * this request's absolute URL with `after` set to the cursor.
 */
export function setNextLink(req: Request, res: Response, after: string): void {
  const url = new URL(`${publicBase(req)}${req.originalUrl}`);
  url.searchParams.set('after', after);
  // Percent-encoded throughout: URLSearchParams writes a space as '+', which the contract's
  // validator refuses in a query value.
  url.search = [...url.searchParams].map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');
  res.setHeader('Link', `<${url.toString()}>; rel="next"`);
}
