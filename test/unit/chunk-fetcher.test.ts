/**
 * The pull's batching chunk fetcher against a tiny HTTP server that answers chunks/fetch right,
 * short, or with wrong bytes: good chunks resolve, everything else rejects with one CliError.
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from '../../src/lib/sha256.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ChunkFetcher } from '../../src/cli/chunk-fetcher.js';
import { CliError } from '../../src/cli/errors.js';
import { ApiClient } from '../../src/cli/http-client.js';
import { recordHeader } from '../../src/lib/chunk-pack.js';

const chunks = [randomBytes(1000), randomBytes(2000), randomBytes(3000)];
const digestOf = sha256;
const byDigest = new Map(chunks.map((c) => [digestOf(c), c]));
/** How the server misbehaves on the current test. */
let mode: 'right' | 'short' | 'corrupt' = 'right';
let requests = 0;
let server: Server;
let client: ApiClient;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      requests++;
      const { digests } = JSON.parse(body) as { digests: string[] };
      const records = digests.map((d, i) => {
        const data = Buffer.from(byDigest.get(d)!);
        if (mode === 'corrupt' && i === 1) data[0]! ^= 0xff;
        return Buffer.concat([recordHeader(d, data.length), data]);
      });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.concat(mode === 'short' ? records.slice(0, 1) : records));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'token');
});
afterAll(() => server.close());

const fetchAll = (fetcher: ChunkFetcher) => Promise.allSettled(chunks.map((c) => fetcher.get(digestOf(c), c.length)));

it('asks for the chunks of one turn in one request, once per digest, and checks each', async () => {
  mode = 'right';
  requests = 0;
  const fetcher = new ChunkFetcher(client, '/chunks/fetch');
  const [again, ...all] = await Promise.all([fetcher.get(digestOf(chunks[0]!), 1000), ...chunks.map((c) => fetcher.get(digestOf(c), c.length))]);
  expect(again.equals(chunks[0]!)).toBe(true);
  expect(all.map((b, i) => b.equals(chunks[i]!))).toEqual([true, true, true]);
  expect(requests).toBe(1);
});

it('rejects the chunks a short answer left out, and keeps the ones it carried', async () => {
  mode = 'short';
  const results = await fetchAll(new ChunkFetcher(client, '/chunks/fetch'));
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
  const reason = (results[1] as PromiseRejectedResult).reason as Error;
  expect(reason).toBeInstanceOf(CliError);
  expect(reason.message).toMatch(/answered 1 of 3 chunks/);
});

it('rejects a chunk whose bytes do not match its digest, and those after it', async () => {
  mode = 'corrupt';
  const results = await fetchAll(new ChunkFetcher(client, '/chunks/fetch'));
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
  expect(((results[1] as PromiseRejectedResult).reason as Error).message).toMatch(/failed verification/);
});
