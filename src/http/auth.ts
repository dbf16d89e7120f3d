import type { NextFunction, Request, Response } from 'express';
import type { TokenService } from '../auth/token-service.js';
import type { AccountService } from '../domain/account.service.js';
import { unauthorized } from '../domain/errors.js';
import { ANONYMOUS, type Principal } from '../domain/principal.js';

/**
 * Turns the bearer token into the request's principal; no token means anonymous (the domain
 * decides what anonymous callers may see). A token that is present but does not verify is a
 * 401 everywhere, even where anonymous access would have been allowed.
 */
export function authenticate(tokens: TokenService, accounts: AccountService) {
  return async (req: Request, res: Response, next: NextFunction) => {
    res.locals.principal = ANONYMOUS;
    const token = bearerToken(req);
    if (token === undefined) return next();
    const claims = await tokens.verify(token);
    res.locals.principal = await accounts.principalFor(claims.sub, claims.scopes, claims.org);
    next();
  };
}

/**
 * Reads the token the way each dialect's clients send it: `Authorization: Bearer <token>`
 * (everyone), `Authorization: token <token>` (GitHub-style clients) or `PRIVATE-TOKEN: <token>`
 * (GitLab's).
 */
function bearerToken(req: Request): string | undefined {
  const privateToken = req.get('private-token');
  if (privateToken !== undefined) return privateToken.trim();
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^(?:Bearer|token)\s+(\S+)\s*$/i.exec(header);
  if (!match) throw unauthorized('expected "Authorization: Bearer <token>"');
  return match[1];
}

export const principalOf = (res: Response): Principal => res.locals.principal as Principal;
