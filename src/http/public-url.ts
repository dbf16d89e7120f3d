/**
 * The public base URL of a request: what every absolute URL snapfork prints (repository `url`
 * fields, GitLab's `web_url` and `_links`, pagination `Link` headers) starts with, in every
 * dialect. The configured SNAPFORK_PUBLIC_URL when there is one (a server behind a proxy that
 * rewrites the host or adds a path prefix); else the request's own origin, as a client reached
 * it: `X-Forwarded-Proto` and `X-Forwarded-Host` count when the proxy is trusted (app.ts).
 */
import type { Express, Request } from 'express';

const SETTING = 'snapfork public url';

/** Records the configured public URL (none: each request's own origin) on the app, once. */
export function setPublicUrl(app: Express, publicUrl: string | undefined): void {
  app.set(SETTING, publicUrl);
}

/** Scheme, host and any path prefix, without a trailing slash: `${publicBase(req)}/api/v1/...`. */
export function publicBase(req: Request): string {
  const configured = req.app.get(SETTING) as string | undefined;
  if (configured !== undefined) return configured;
  // An HTTP/1.0 request may come without a Host: the address it reached stands in for it.
  const { localAddress, localPort } = req.socket;
  const host = req.host ?? (localAddress?.includes(':') ? `[${localAddress}]:${localPort}` : `${localAddress}:${localPort}`);
  return `${req.protocol}://${host}`;
}
