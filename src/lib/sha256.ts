import { createHash } from 'node:crypto';

/** Lower-case hex SHA-256 of `data`: how every chunk, manifest and upload is addressed. */
export const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');
