/**
 * The public base URL of a request: what every absolute URL snapfork prints (repository `url`
 * fields, GitLab's `web_url` and `_links`, pagination `Link` headers) starts with, in every
 * dialect. The configured SNAPFORK_PUBLIC_URL when there is one (a server behind a proxy that
 * rewrites the host or adds a path prefix); else the request's own origin, as a client reached
 * it: `X-Forwarded-Proto` and `X-Forwarded-Host` count when the proxy is trusted (app.ts).
 */
import type { Express, Request, RequestHandler } from 'express';
import { HttpStatusError } from './errors.js';

const SETTING = 'snapfork public url';

/** A host and nothing else: a name or an IP literal, and a port. */
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/** Records the configured public URL (none: each request's own origin) on the app, once. */
export function setPublicUrl(app: Express, publicUrl: string | undefined): void {
  app.set(SETTING, publicUrl);
}

/**
 * Refuses with 400, before any route runs, a request whose origin cannot start the absolute
 * URLs of its answer (RFC 9112 §3.2: a Host that is no host is a 400): a Host or trusted
 * X-Forwarded-Host that is not a host and port (`a b`, `[::1`, `x:99999`, `a@b`, `a/b`) and an
 * X-Forwarded-Proto other than http or https. Otherwise such an answer would fail, after its
 * work was done, or point elsewhere. Nothing to check under a configured public URL.
 */
export const requireValidOrigin: RequestHandler = (req, _res, next) => {
  if (req.app.get(SETTING) !== undefined) return next();
  const { host, protocol } = req;
  if (protocol !== 'http' && protocol !== 'https') return next(new HttpStatusError(400, `unsupported forwarded protocol ${JSON.stringify(protocol)}`));
  if (host && !(HOST.test(host) && URL.canParse(`${protocol}://${host}`))) return next(new HttpStatusError(400, `invalid Host header ${JSON.stringify(host)}`));
  next();
};

/** Scheme, host and any path prefix, without a trailing slash: `${publicBase(req)}/api/v1/...`. */
export function publicBase(req: Request): string {
  const configured = req.app.get(SETTING) as string | undefined;
  if (configured !== undefined) return configured;
  // An HTTP/1.0 request may come without a Host: the address it reached stands in for it.
  const { localAddress, localPort } = req.socket;
  const host = req.host ?? (localAddress?.includes(':') ? `[${localAddress}]:${localPort}` : `${localAddress}:${localPort}`);
  return `${req.protocol}://${host}`;
}
