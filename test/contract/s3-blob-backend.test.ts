/**
 * The BlobBackend contract on a real S3 store (Ceph RGW from scripts/dev/s3.sh), and what only
 * S3 has: multipart uploads that must not be left behind, bounded parts in flight, Content-MD5
 * refusing a corrupted transfer, and retries. Failures are made by a small HTTP proxy between
 * the backend and the store, which answers or breaks chosen requests and forwards the others
 * untouched (SigV4 signs the Host header, which it keeps, so RGW accepts what it forwards).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobBackend } from '../../src/store/blobs/s3.js';
import type { BlobUpload } from '../../src/store/packs/blob-backend.js';
import { emptyPrefix, freshPrefix, pendingUploads, rawClient, s3Config, S3_SKIP_REASON } from '../support/s3.js';
import { blobBackendContract } from './blob-backend.contract.js';

const MIB = 1024 * 1024;

if (!s3Config) console.warn(`S3 blob backend tests skipped: ${S3_SKIP_REASON}`);

describe.skipIf(!s3Config)(`S3 blob backend${s3Config ? '' : ` (skipped: ${S3_SKIP_REASON})`}`, () => {
  const config = s3Config!;
  let runPrefix: string;
  let client: S3Client;
  let opened = 0;

  beforeAll(() => {
    runPrefix = freshPrefix(config, 'blobs');
    client = rawClient(config);
  });
  afterAll(async () => {
    await emptyPrefix(client, config.bucket, runPrefix);
    client.destroy();
  });

  /** A key prefix of its own under this run's. */
  const namespace = () => `${runPrefix}${opened++}/`;
  /** A backend in a fresh namespace, or in `prefix`; through `endpoint` (a proxy) if given. */
  const openBackend = (options: { endpoint?: string; maxAttempts?: number; prefix?: string } = {}) =>
    new S3BlobBackend({ ...config, ...options, prefix: options.prefix ?? namespace() });

  blobBackendContract('S3', async () => openBackend());

  describe('multipart uploads', () => {
    it('leave no parts behind when aborted, and none when committed', async () => {
      const prefix = namespace();
      const backend = openBackend({ prefix });
      const upload = backend.create('packs/aborted.pack');
      // Three parts: the third waits for one of the first two, so the multipart upload exists.
      await upload.write(randomBytes(25 * MIB));
      expect(await pendingUploads(client, config.bucket, prefix)).toHaveLength(1);
      await upload.abort();
      expect(await pendingUploads(client, config.bucket, prefix)).toEqual([]);

      const committed = backend.create('packs/committed.pack');
      await committed.write(randomBytes(9 * MIB));
      await committed.commit();
      expect(await pendingUploads(client, config.bucket, prefix)).toEqual([]);
      await backend.close();
    });

    it('abandons another process\'s unfinished upload older than asked, never its own under way', async () => {
      const prefix = namespace();
      const crashed = openBackend({ prefix });
      const left = crashed.create('packs/left.pack');
      await left.write(randomBytes(25 * MIB)); // three parts: the third waits for one of the first two, so the multipart upload exists
      const backend = openBackend({ prefix });
      const own = backend.create('packs/own.pack');
      await own.write(randomBytes(25 * MIB));
      expect(await pendingUploads(client, config.bucket, prefix)).toHaveLength(2);

      expect(await backend.abandonUploads(new Date(Date.now() - 3600_000))).toBe(0); // both are younger
      expect(await backend.abandonUploads(new Date(Date.now() + 3600_000))).toBe(1);
      expect(await pendingUploads(client, config.bucket, prefix)).toHaveLength(1);
      await own.commit();
      expect((await backend.stat('packs/own.pack'))?.size).toBe(25 * MIB);
      await expect(left.commit()).rejects.toThrow();
      await Promise.all([backend.close(), crashed.close()]);
    });

    it('end() sends the last bytes as a part, still invisible, and commit() then makes the blob whole', async () => {
      const prefix = namespace();
      const backend = openBackend({ prefix });
      const data = randomBytes(3 * MIB);
      const upload = backend.create('packs/ended.pack') as BlobUpload & { end(): Promise<void> };
      await upload.write(data);
      await upload.end();
      await expect(upload.write(Buffer.from('more'))).rejects.toThrow('write to an upload that was ended');
      // A small blob too goes up as a multipart upload here, since a PutObject would show it.
      expect(await backend.stat('packs/ended.pack')).toBeUndefined();
      expect((await pendingUploads(client, config.bucket, prefix)).map((u) => u.key)).toEqual([`${prefix}packs/ended.pack`]);
      await upload.commit();
      expect((await backend.read('packs/ended.pack', 0, data.length)).equals(data)).toBe(true);
      await backend.close();
    });

    it('keeps at most two parts in flight: write() waits for one to finish', async () => {
      const proxy = await startProxy(() => 'forward');
      const backend = openBackend({ endpoint: proxy.url });
      const upload = backend.create('packs/pressure.pack');
      const piece = 256 * 1024;
      let accepted = 0;
      for (let i = 0; i < (48 * MIB) / piece; i++) {
        await upload.write(randomBytes(piece));
        accepted += piece;
        // What the upload holds: bytes accepted but not yet stored by a finished part.
        expect(accepted - proxy.partsDone * 8 * MIB).toBeLessThanOrEqual(3 * 8 * MIB + piece);
      }
      await upload.commit();
      expect(proxy.maxPartsInFlight).toBeGreaterThanOrEqual(1);
      expect(proxy.maxPartsInFlight).toBeLessThanOrEqual(2);
      expect(await backend.stat('packs/pressure.pack')).toMatchObject({ size: 48 * MIB });
      await backend.close();
      await proxy.close();
    });
  });

  describe('integrity', () => {
    // Over plain HTTP the SDK signs a SHA-256 of each body, so RGW refuses a changed byte for that
    // (XAmzContentSHA256Mismatch) before it compares Content-MD5 (BadDigest); over HTTPS the
    // signature may not cover the body, and Content-MD5 is what catches it.
    const refusedDigests = ['XAmzContentSHA256Mismatch', 'BadDigest'];

    it('this store checks Content-MD5: a body that does not match it is refused with BadDigest', async () => {
      const prefix = namespace();
      const error = await client
        .send(new PutObjectCommand({ Bucket: config.bucket, Key: `${prefix}x`, Body: Buffer.from('one'), ContentMD5: createHash('md5').update('two').digest('base64') }))
        .catch((e: unknown) => e);
      expect((error as S3ServiceException).name).toBe('BadDigest');
      expect(await pendingUploads(client, config.bucket, prefix)).toEqual([]);
    });

    it('a byte changed on the way refuses the PutObject and nothing is stored', async () => {
      const proxy = await startProxy((req) => (req.method === 'PUT' ? 'corrupt' : 'forward'));
      const backend = openBackend({ endpoint: proxy.url });
      const upload = backend.create('packs/small.pack');
      await upload.write(randomBytes(100_000));
      const error = await upload.commit().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(S3ServiceException);
      expect(refusedDigests).toContain((error as S3ServiceException).name);
      expect(await backend.stat('packs/small.pack')).toBeUndefined();
      await backend.close();
      await proxy.close();
    });

    it('a byte changed in a part refuses that part; the upload fails whole, aborted, nothing stored', async () => {
      const proxy = await startProxy((req) => (req.method === 'PUT' && req.url!.includes('partNumber=2') ? 'corrupt' : 'forward'));
      const prefix = namespace();
      const backend = openBackend({ endpoint: proxy.url, prefix });
      const upload = backend.create('packs/big.pack');
      const written = (async () => {
        for (let i = 0; i < 24; i++) await upload.write(randomBytes(MIB));
        await upload.commit();
      })();
      const error = await written.catch((e: unknown) => e);
      expect(refusedDigests).toContain((error as S3ServiceException).name);
      await upload.abort();
      expect(await backend.stat('packs/big.pack')).toBeUndefined();
      expect(await pendingUploads(client, config.bucket, prefix)).toEqual([]);
      await backend.close();
      await proxy.close();
    });
  });

  describe('retries', () => {
    it('retries 503 SlowDown, 429, 500 and a dropped connection, then succeeds', async () => {
      const failures: Failure[] = [{ status: 503, code: 'SlowDown' }, { status: 429, code: 'TooManyRequests' }, { status: 500, code: 'InternalError' }, 'reset'];
      const proxy = await startProxy((req) => (req.method === 'PUT' ? (failures.shift() ?? 'forward') : 'forward'));
      const backend = openBackend({ endpoint: proxy.url, maxAttempts: 5 });
      const upload = backend.create('packs/retried.pack');
      await upload.write(Buffer.from('worth the wait'));
      await upload.commit();
      expect(proxy.log.filter((r) => r.method === 'PUT').map((r) => r.answer)).toEqual(['503', '429', '500', 'reset', 'forward']);
      expect(await backend.read('packs/retried.pack', 0, 100)).toEqual(Buffer.from('worth the wait'));
      await backend.close();
      await proxy.close();
    });

    it('gives up after maxAttempts on a store that keeps failing, with its error', async () => {
      const prefix = namespace();
      const backend = openBackend({ prefix });
      await put(backend, 'packs/kept.pack', Buffer.from('there'));
      const proxy = await startProxy(() => ({ status: 500, code: 'InternalError' }));
      const failing = openBackend({ endpoint: proxy.url, maxAttempts: 3, prefix });
      const error = await failing.read('packs/kept.pack', 0, 5).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(S3ServiceException);
      expect((error as S3ServiceException).$metadata.httpStatusCode).toBe(500);
      expect(proxy.log).toHaveLength(3);
      await failing.close();
      await backend.close();
      await proxy.close();
    });

    it('resumes a read whose body breaks off half way, from the byte it got to', async () => {
      const prefix = namespace();
      const backend = openBackend({ prefix });
      const data = randomBytes(2 * MIB);
      await put(backend, 'packs/cut.pack', data);
      let cuts = 1;
      const proxy = await startProxy((req) => (req.method === 'GET' && cuts-- > 0 ? 'truncate' : 'forward'));
      const reader = openBackend({ endpoint: proxy.url, prefix });
      expect((await reader.read('packs/cut.pack', 100, data.length)).equals(data.subarray(100))).toBe(true);
      const gets = proxy.log.filter((r) => r.method === 'GET');
      expect(gets).toHaveLength(2);
      expect(gets[0]!.range).toBe(`bytes=100-${100 + data.length - 1}`);
      const resumedAt = Number(/^bytes=(\d+)-/.exec(gets[1]!.range!)![1]);
      expect(resumedAt).toBeGreaterThan(100);
      expect(resumedAt).toBeLessThan(data.length);
      await reader.close();
      await backend.close();
      await proxy.close();
    });
  });
});

async function put(backend: S3BlobBackend, name: string, data: Buffer): Promise<void> {
  const upload = backend.create(name);
  await upload.write(data);
  await upload.commit();
}

/** What the proxy does with a request: an S3 error answer, a dropped connection, or forwarding (with a flipped body byte, or a response cut in half). */
type Failure = { status: number; code: string } | 'reset';
type Action = Failure | 'forward' | 'corrupt' | 'truncate';

interface Proxy {
  url: string;
  log: { method: string; url: string; range?: string; answer: string }[];
  /** UploadPart requests answered, and the most that were open at once. */
  partsDone: number;
  maxPartsInFlight: number;
  close(): Promise<void>;
}

/** An HTTP proxy to the store on an ephemeral loopback port; `decide` picks each request's fate. */
async function startProxy(decide: (req: IncomingMessage) => Action): Promise<Proxy> {
  const target = new URL(s3Config!.endpoint);
  let partsInFlight = 0;
  const proxy: Proxy = { url: '', log: [], partsDone: 0, maxPartsInFlight: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      const body = Buffer.concat(parts);
      const action = decide(req);
      const isPart = req.method === 'PUT' && req.url!.includes('partNumber=');
      proxy.log.push({ method: req.method!, url: req.url!, range: req.headers.range, answer: typeof action === 'object' ? String(action.status) : action });
      if (action === 'reset') return req.socket.destroy();
      if (typeof action === 'object') return answerError(res, action);
      if (action === 'corrupt' && body.length > 0) body[body.length >> 1]! ^= 0xff;
      if (isPart) proxy.maxPartsInFlight = Math.max(proxy.maxPartsInFlight, ++partsInFlight);
      // This proxy has already answered any `Expect: 100-continue` and holds the whole body.
      const { expect: _expect, ...headers } = req.headers;
      const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        if (action !== 'truncate') {
          answer.pipe(res);
          answer.on('end', () => {
            if (isPart) {
              partsInFlight--;
              proxy.partsDone++;
            }
          });
          return;
        }
        // Half the body, then the connection drops: the client sees a body shorter than announced.
        const half = Number(answer.headers['content-length']) >> 1;
        let sent = 0;
        answer.on('data', (chunk: Buffer) => {
          if (sent >= half) return;
          const part = chunk.subarray(0, half - sent);
          sent += part.length;
          res.write(part, () => {
            if (sent >= half) res.socket?.destroy();
          });
        });
      });
      upstream.on('error', () => res.socket?.destroy());
      upstream.end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

function answerError(res: ServerResponse, { status, code }: { status: number; code: string }): void {
  const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}
