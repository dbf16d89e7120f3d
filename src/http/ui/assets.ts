/**
 * The UI's stylesheet and script, read once at start from src/http/ui/static (the same folder
 * from src/ and from dist/: the build leaves non-TypeScript files where they are), each with
 * an ETag of its content.
 */
import { readFileSync } from 'node:fs';
import { sha256 } from '../../lib/sha256.js';

export interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const STATIC_DIR = new URL('../../../src/http/ui/static/', import.meta.url);

const TYPES: Record<string, string> = { 'ui.css': 'text/css; charset=utf-8', 'ui.js': 'text/javascript; charset=utf-8' };

export function loadAssets(): ReadonlyMap<string, Asset> {
  return new Map(
    Object.entries(TYPES).map(([name, type]) => {
      const body = readFileSync(new URL(name, STATIC_DIR));
      return [name, { body, type, etag: `"${sha256(body).slice(0, 32)}"` }];
    }),
  );
}
