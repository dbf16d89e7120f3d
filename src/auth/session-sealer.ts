/**
 * Sealed values for HTTP sessions: a few string claims encrypted and authenticated (JWE, `dir`
 * with A256GCM) under one secret, with an expiry, so that a session can live in a cookie rather
 * than in any server's memory. jose stays behind this narrow interface.
 */
import { EncryptJWT, jwtDecrypt } from 'jose';

export type SealedClaims = Readonly<Record<string, string>>;

export class SessionSealer {
  /** `secret`: 32 bytes, the same on every server that must open what another sealed. */
  constructor(private readonly secret: Uint8Array) {
    if (secret.byteLength !== 32) throw new Error('a session secret is 32 bytes');
  }

  /** `claims` encrypted and authenticated, opened by `open` until `expiresAt` (seconds since the epoch). */
  async seal(claims: SealedClaims, expiresAt: number): Promise<string> {
    return new EncryptJWT({ ...claims }).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).setIssuedAt().setExpirationTime(expiresAt).encrypt(this.secret);
  }

  /**
   * The claims of a value `seal` made with this secret, while it has not expired; undefined for
   * anything else (tampered, expired, another secret, not a sealed value at all). Never throws.
   */
  async open(sealed: string): Promise<SealedClaims | undefined> {
    try {
      const { payload } = await jwtDecrypt(sealed, this.secret, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
      const claims: Record<string, string> = {};
      for (const [name, value] of Object.entries(payload)) if (typeof value === 'string') claims[name] = value;
      return claims;
    } catch {
      return undefined;
    }
  }
}
