/**
 * The push's chunk uploader against a real server: the chunker waits while a full batch cannot
 * start (so memory stays bounded whatever the data's size), and goes on once batches end.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ChunkUploader } from '../../src/cli/chunk-uploader.js';
import { ApiClient, transferApiPaths } from '../../src/cli/http-client.js';
import { Progress } from '../../src/cli/progress.js';
import { sha256 } from '../../src/lib/sha256.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

/** Lets every callback queued so far, and the promises they settle, run. */
const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

it('holds the chunker while batchesInFlight batches are out and the next one is full, and sends every chunk once they end', async () => {
  const token = await s.token('alice');
  await s.createRepo(token, 'pressure');
  const chunks = Array.from({ length: 8 }, (_, i) => {
    const data = randomBytes(1000 + i);
    return { digest: sha256(data), data, place: { file: '/never-read', offset: 0, size: data.length } };
  });
  // The first two `missing` questions wait here until the test lets them through.
  const held: (() => void)[] = [];
  let twoHeld!: () => void;
  const heldTwo = new Promise<void>((resolve) => (twoHeld = resolve));
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    if (held.length < 2 && String(input instanceof Request ? input.url : input).endsWith('/chunks/missing')) {
      await new Promise<void>((release) => {
        held.push(release);
        if (held.length === 2) twoHeld();
      });
    }
    return realFetch(input, init);
  };
  try {
    const uploader = new ChunkUploader(new ApiClient(s.url, token), transferApiPaths({ owner: 'alice', repo: 'pressure' }), new Progress(undefined, Date.now, 'send', 0), {
      batchBytes: 1 << 30,
      batchChunks: 2,
      batchesInFlight: 2,
    });
    let taken = 0;
    const upload = uploader.upload(async (sink) => {
      for (const c of chunks) {
        await sink(c);
        taken++;
      }
      return 'chunked';
    });
    await heldTwo;
    await settle();
    // Batches of chunks 1-2 and 3-4 are out, the one of 5-6 is full and cannot start: the
    // sixth chunk's sink has not returned, and nothing more is cut.
    expect(taken).toBe(5);
    for (const release of held) release();
    expect(await upload).toBe('chunked');
    expect(taken).toBe(8);
    expect(uploader.sent).toBe(chunks.reduce((n, c) => n + c.data.length, 0));
  } finally {
    globalThis.fetch = realFetch;
  }
});
