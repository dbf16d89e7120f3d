/**
 * Vitest setup: SNAPFORK_ZSTD=wasm (or native) runs a whole test run on that zstd build, the
 * stores and the test servers' codec workers included (`SNAPFORK_ZSTD=wasm npx vitest run`).
 */
import { loadConfig } from '../../src/config.js';
import { useZstd } from '../../src/lib/zstd.js';

const { zstd } = loadConfig({ SNAPFORK_ZSTD: process.env.SNAPFORK_ZSTD });
if (zstd !== undefined) useZstd(zstd);
