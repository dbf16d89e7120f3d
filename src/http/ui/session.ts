/**
 * Web UI sessions, kept in the browser: a cookie holding the signed-in user's token and the
 * session's CSRF token, sealed (encrypted and authenticated) with a secret derived from the
 * signing key in the metadata database. Every server of one database opens every session, and
 * none is held in any process's memory. The cookie is HttpOnly, SameSite=Strict, scoped to the
 * UI's path, and Secure when the public URL is https.
 *
 * The token is verified again on every request (as a bearer token is), so a session ends when
 * its token expires; signing out removes the cookie from the browser. A copy of the cookie taken
 * before then stays as good as the token it holds, until the session's own expiry.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { SessionSealer } from '../../auth/session-sealer.js';
import type { TokenClaims, TokenService } from '../../auth/token-service.js';
import type { AccountService } from '../../domain/account.service.js';
import { ANONYMOUS, type Principal } from '../../domain/principal.js';
import { publicBase } from '../public-url.js';

export const SESSION_COOKIE = 'snapfork_ui';
/** The longest a signed-in session lasts, whatever its token's lifetime. */
export const SESSION_SECONDS = 12 * 3600;
/** A visitor's session before signing in: only the CSRF token of the sign-in form. */
const VISITOR_SESSION_SECONDS = 2 * 3600;

export interface UiSession {
  /** Carried by every form of the session's pages and checked on every POST. */
  csrf: string;
  /** The signed-in user's token; null before signing in. */
  token: string | null;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export class UiSessions {
  private readonly sealer: SessionSealer;

  constructor(
    private readonly tokens: TokenService,
    private readonly accounts: AccountService,
    /** The UI's path below the public base, e.g. `/ui`. */
    private readonly prefix: string,
  ) {
    this.sealer = new SessionSealer(tokens.deriveSecret('web-ui-session'));
  }

  /** The session the request's cookie holds, if one opens (unexpired, sealed by a server of this database). */
  async read(req: Request): Promise<UiSession | undefined> {
    const sealed = cookieOf(req, SESSION_COOKIE);
    const claims = sealed === undefined ? undefined : await this.sealer.open(sealed);
    if (claims?.csrf === undefined) return undefined;
    return { csrf: claims.csrf, token: claims.token ?? null };
  }

  /**
   * The user a session's token names, verified as a bearer token is (TokenService.verify);
   * anonymous without a token. Throws `unauthorized` once the token no longer verifies.
   */
  async principalOf(session: UiSession): Promise<Principal> {
    if (session.token === null) return ANONYMOUS;
    return this.principalOfClaims(await this.tokens.verify(session.token));
  }

  /** Verifies a pasted token (`unauthorized` when it does not verify) and answers its claims and principal. */
  async verify(token: string): Promise<{ claims: TokenClaims; principal: Principal }> {
    const claims = await this.tokens.verify(token);
    return { claims, principal: await this.principalOfClaims(claims) };
  }

  /**
   * Starts a new session with a fresh CSRF token (so none seen before signing in survives it):
   * signed in as `signedIn.token` until its expiry or SESSION_SECONDS, or a visitor's.
   */
  async start(req: Request, res: Response, signedIn?: { token: string; exp: number }): Promise<UiSession> {
    const session: UiSession = { csrf: randomBytes(32).toString('base64url'), token: signedIn?.token ?? null };
    const expiresAt = signedIn ? Math.min(signedIn.exp, nowSeconds() + SESSION_SECONDS) : nowSeconds() + VISITOR_SESSION_SECONDS;
    const claims: Record<string, string> = { csrf: session.csrf };
    if (session.token !== null) claims.token = session.token;
    const sealed = await this.sealer.seal(claims, expiresAt);
    res.cookie(SESSION_COOKIE, sealed, { ...this.cookieScope(req), maxAge: (expiresAt - nowSeconds()) * 1000 });
    return session;
  }

  /** Removes the session's cookie from the browser. */
  end(req: Request, res: Response): void {
    res.clearCookie(SESSION_COOKIE, this.cookieScope(req));
  }

  private cookieScope(req: Request) {
    const base = new URL(publicBase(req));
    return {
      httpOnly: true,
      sameSite: 'strict' as const,
      secure: base.protocol === 'https:',
      path: `${base.pathname.replace(/\/+$/, '')}${this.prefix}`,
    };
  }

  private principalOfClaims(claims: TokenClaims): Promise<Principal> {
    return this.accounts.principalFor(claims.sub, claims.scopes, claims.org);
  }
}

/** Whether `given` (a form's field) is the session's CSRF token, compared in constant time. */
export function csrfMatches(session: UiSession | undefined, given: unknown): boolean {
  if (session === undefined || typeof given !== 'string') return false;
  const expected = Buffer.from(session.csrf);
  const actual = Buffer.from(given);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** One cookie's value from the Cookie header; undefined when absent or not decodable. */
function cookieOf(req: Request, name: string): string | undefined {
  for (const pair of (req.get('cookie') ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      return undefined;
    }
  }
  return undefined;
}
