/** Who is calling: derived from a verified token by the HTTP layer, checked by the access policy. */

export const SCOPES = ['repo:read', 'repo:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface UserPrincipal {
  kind: 'user';
  userId: number;
  login: string;
  scopes: ReadonlySet<Scope>;
  /** The organization the token acts in (the `org` claim): Vers-shaped calls target it. */
  org?: string;
}

export interface AnonymousPrincipal {
  kind: 'anonymous';
}

export type Principal = UserPrincipal | AnonymousPrincipal;

export const ANONYMOUS: AnonymousPrincipal = Object.freeze({ kind: 'anonymous' });
