/**
 * Bearer tokens: signing and verification with jose, kept behind this one narrow interface.
 * Tokens are EdDSA (Ed25519) JWTs signed with a key kept in the metadata database (created on
 * first use), so that every server of one database signs and verifies alike. Optionally tokens
 * of an external issuer are accepted too, verified against its JWKS URL with its own issuer and
 * audience.
 */
import { hkdfSync, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Config } from '../config.js';
import { invalid, unauthorized } from '../domain/errors.js';
import { isNamespaceName } from '../domain/names.js';
import { SCOPES, type Scope } from '../domain/principal.js';
import type { SigningKeyStore } from '../store/types.js';

const ALG = 'EdDSA';
export const SIGNING_KEY_FILE = 'signing-key.jwk';
/** The longest lifetime this server signs a token for, so the furthest `exp` it accepts. */
export const MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600;
/** How far the clocks of a token's issuer and of this server may disagree. */
const CLOCK_SKEW_SECONDS = 60;
/** Tokens remembered as verified: a client sends the same token with every request. */
const VERIFIED_TOKENS = 1024;
/**
 * How long a verified token is taken without checking its signature again (never past its
 * expiry): an external issuer may withdraw a key from its JWKS, and that must take effect soon.
 */
const VERIFIED_FOR_MS = 60_000;

export interface TokenClaims {
  /** The login of the user. */
  sub: string;
  scopes: Scope[];
  /** The organization Vers-shaped calls act in. */
  org?: string;
  jti: string;
  exp: number;
}

export interface TokenRequest {
  sub: string;
  scopes: readonly Scope[];
  org?: string;
  ttlSeconds: number;
}

type KeyLike = Awaited<ReturnType<typeof importJWK>>;

export class TokenService {
  /**
   * Verified tokens, the least recently verified first, each with the time until which it is
   * taken without checking its signature again: an EdDSA verification was 5-7% of a read's CPU.
   */
  private readonly verified = new Map<string, { claims: TokenClaims; until: number }>();

  private constructor(
    private readonly config: Config['auth'],
    private readonly privateKey: KeyLike,
    private readonly publicKey: KeyLike,
    private readonly publicJwk: JWK,
    private readonly external: JWTVerifyGetKey | undefined,
    /** The private key's own bytes (JWK `d`), which derived secrets come from. */
    private readonly keyMaterial: Buffer,
  ) {}

  /**
   * The service over the signing key the metadata store holds (shared by every server of one
   * database), storing one on first use: the data directory's `signing-key.jwk` when a server
   * from before keys were kept in the database left one (its tokens stay valid), else a new key.
   */
  static async open(config: Config, keys: SigningKeyStore): Promise<TokenService> {
    const legacy = await readKeyFile(join(config.dataDir, SIGNING_KEY_FILE));
    const jwk = JSON.parse(await keys.ensureSigningKey(JSON.stringify(legacy ?? (await newKey())))) as JWK;
    const { d: _private, ...publicJwk } = jwk;
    const external = config.auth.external
      ? createRemoteJWKSet(new URL(config.auth.external.jwksUrl))
      : undefined;
    return new TokenService(
      config.auth,
      await importJWK(jwk, ALG),
      await importJWK(publicJwk, ALG),
      { ...publicJwk, alg: ALG, use: 'sig' },
      external,
      Buffer.from(jwk.d ?? '', 'base64url'),
    );
  }

  /**
   * A 32-byte secret for `purpose` (HKDF-SHA256 of the signing key): every server of one
   * database derives the same one, and nothing about the signing key can be learnt from it, nor
   * one purpose's secret from another's.
   */
  deriveSecret(purpose: string): Uint8Array {
    return new Uint8Array(hkdfSync('sha256', this.keyMaterial, 'snapfork', purpose, 32));
  }

  /** The public half of the signing key, as a JWKS document others can verify our tokens with. */
  jwks(): { keys: JWK[] } {
    return { keys: [this.publicJwk] };
  }

  async sign(req: TokenRequest): Promise<string> {
    if (!Number.isSafeInteger(req.ttlSeconds) || req.ttlSeconds <= 0 || req.ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
      throw invalid(`token lifetime must be from 1 to ${MAX_TOKEN_TTL_SECONDS} seconds (366 days)`);
    }
    const payload: JWTPayload = { scope: req.scopes.join(' ') };
    if (req.org) payload.org = req.org;
    return new SignJWT(payload)
      .setProtectedHeader({ alg: ALG, typ: 'JWT', kid: this.publicJwk.kid })
      .setSubject(req.sub)
      .setIssuer(this.config.issuer)
      .setAudience(this.config.audience)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + req.ttlSeconds)
      .setJti(randomUUID())
      .sign(this.privateKey);
  }

  /**
   * Verifies signature, issuer, audience and the times (`exp`, `nbf`, `iat` not in the future,
   * `exp` no further than MAX_TOKEN_TTL_SECONDS, each with CLOCK_SKEW_SECONDS of slack), and
   * that `sub` (and `org`, when present) is a valid name; throws `unauthorized` otherwise. Only
   * asymmetric algorithms are accepted, so `alg: none` and HMAC forgeries fail, and a token
   * whose header names a key (`kid`) is verified with that key only. A token verified in the
   * last VERIFIED_FOR_MS is taken as it was then, never past its expiry.
   */
  async verify(token: string): Promise<TokenClaims> {
    const now = Date.now();
    const known = this.verified.get(token);
    if (known && now < known.until) return { ...known.claims, scopes: [...known.claims.scopes] };
    const claims = await this.verifyAnew(token);
    this.verified.delete(token);
    this.verified.set(token, { claims, until: Math.min(now + VERIFIED_FOR_MS, (claims.exp + CLOCK_SKEW_SECONDS) * 1000) });
    if (this.verified.size > VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    return { ...claims, scopes: [...claims.scopes] };
  }

  private async verifyAnew(token: string): Promise<TokenClaims> {
    let payload: JWTPayload;
    try {
      payload = await this.verifyWithAnyKey(token);
    } catch {
      throw unauthorized('invalid or expired token');
    }
    const { sub, exp, iat } = payload;
    if (typeof sub !== 'string' || !isNamespaceName(sub) || typeof exp !== 'number') {
      throw unauthorized('token lacks a valid subject or an expiry');
    }
    const now = Math.floor(Date.now() / 1000);
    if (iat !== undefined && iat > now + CLOCK_SKEW_SECONDS) throw unauthorized('token issued in the future');
    if (exp > now + MAX_TOKEN_TTL_SECONDS + CLOCK_SKEW_SECONDS) throw unauthorized('token expires later than this server allows');
    const scopes = (typeof payload.scope === 'string' ? payload.scope.split(' ') : []).filter(
      (s): s is Scope => (SCOPES as readonly string[]).includes(s),
    );
    const org = typeof payload.org === 'string' && payload.org !== '' ? payload.org : undefined;
    if (org !== undefined && !isNamespaceName(org)) throw unauthorized('token names an invalid organization');
    return { sub, scopes, org, jti: String(payload.jti ?? ''), exp };
  }

  private async verifyWithAnyKey(token: string): Promise<JWTPayload> {
    const { kid } = decodeProtectedHeader(token);
    const ext = this.config.external;
    // A token that names a key other than ours can only be the external issuer's.
    if (kid === undefined || kid === this.publicJwk.kid) {
      try {
        const { payload } = await jwtVerify(token, this.publicKey, {
          algorithms: [ALG],
          issuer: this.config.issuer,
          audience: this.config.audience,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: CLOCK_SKEW_SECONDS,
        });
        return payload;
      } catch (ownKeyError) {
        if (!this.external || !ext) throw ownKeyError;
      }
    }
    if (!this.external || !ext) throw new Error(`no key ${kid} here`);
    const { payload } = await jwtVerify(token, this.external, {
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      issuer: ext.issuer,
      audience: ext.audience,
      requiredClaims: ['exp', 'sub'],
      clockTolerance: CLOCK_SKEW_SECONDS,
    });
    return payload;
  }
}

/**
 * Reads the signing key, creating it on first use. The new key is written to a temp file with
 * mode 0600, fsynced and renamed into place, so a crash never leaves a truncated key behind and
 * two processes starting at once (server and CLI) agree on one key: the loser of the rename race
 * re-reads the winner's file.
 */
/** The key a server kept in its data directory before keys were kept in the database, if any. */
async function readKeyFile(file: string): Promise<JWK | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as JWK;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function newKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID() };
}
