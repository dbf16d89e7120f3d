/** Helpers of the tests of Vers' API (test/vers). */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { run } from '../../src/cli/main.js';
import { errorBodyOf } from './error-body.js';
import type { ApiResponse, TestServer } from './server.js';
import { tempDir } from './trees.js';

const execFileAsync = promisify(execFile);

/** Checks an answer is a Vers error (`{error, success: false}`) of `status`, its text `message` when given. */
export async function expectVersError(res: ApiResponse, status: number, message?: string | RegExp): Promise<void> {
  expect(res.status).toBe(status);
  const body = await errorBodyOf(res);
  expect(body).toMatchObject({ success: false, error: expect.any(String) });
  if (typeof message === 'string') expect(body.error).toBe(message);
  else if (message) expect(body.error).toMatch(message);
}

/**
 * Pushes the guest assets' root disk to `ref` as its rootfs.img with the CLI (chunked on this
 * side, so the 512 MiB of a mostly sparse image never cross HTTP) and answers the commit id.
 */
export async function pushGuestRootDisk(s: TestServer, assetsDir: string, token: string, ref: string): Promise<string> {
  const dir = await tempDir();
  try {
    await execFileAsync('cp', ['--sparse=always', join(assetsDir, 'rootfs.img'), join(dir, 'rootfs.img')]);
    const out = new PassThrough();
    const code = await run(['push', dir, ref, '--json'], { stdout: out, stderr: new PassThrough(), env: { SNAPFORK_URL: s.url, SNAPFORK_TOKEN: token }, now: Date.now });
    expect(code).toBe(0);
    return (JSON.parse(String(out.read())) as { commit_id: string }).commit_id;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
