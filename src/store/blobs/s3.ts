/**
 * BlobBackend over an S3 bucket (AWS S3, Ceph's RADOS Gateway, any S3-compatible store), each
 * blob the object `<prefix><name>`.
 *
 * Atomicity comes from S3 itself: a PutObject or a CompleteMultipartUpload makes an object
 * appear whole or not at all, and the parts of an unfinished multipart upload are visible to no
 * GET, HEAD or listing (only to ListMultipartUploads). An upload that a crash leaves unfinished
 * keeps its parts' space until it is aborted: garbage collection aborts those older than its
 * grace (abandonUploads); a bucket lifecycle rule AbortIncompleteMultipartUpload does as well.
 *
 * Integrity: every PutObject and UploadPart carries Content-MD5, which S3 and RGW check before
 * they keep anything (BadDigest otherwise), and the commit of a multipart upload ends with a
 * HeadObject that must show the size written. The ETag that CompleteMultipartUpload returns is not used: RGW 16.2 leaves
 * it empty.
 *
 * Retries: the SDK's standard strategy (exponential backoff with full jitter, 50 ms base, 1 s
 * for throttling, at most `maxAttempts` tries per request, and a shared token bucket that stops
 * retrying while the store keeps failing). It already classifies S3's answers (5xx, 503
 * SlowDown, 429, RequestTimeout, connection resets and refusals), honours Retry-After and
 * resends only bodies it can replay, which ours are (buffers). What it cannot retry is a GET
 * body that breaks after the headers: read() resumes those from the byte it got to.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { corrupt, notFound } from '../../domain/errors.js';
import { trackUpload, type BlobBackend, type BlobInfo, type BlobUpload } from '../packs/blob-backend.js';

export interface S3BlobBackendOptions {
  /** The store's base URL, e.g. http://127.0.0.1:17480. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Bucket in the path (`/bucket/key`) rather than the host name; RGW and most local stores need it. */
  forcePathStyle: boolean;
  bucket: string;
  /** Prepended to every blob name, so several stores (or test runs) can share a bucket. */
  prefix?: string;
  /**
   * Bytes per multipart part, and the most a small blob may have to go up in one PutObject.
   * At least 5 MiB, S3's smallest part but the last.
   */
  partSize?: number;
  /** Tries per request, the first included. */
  maxAttempts?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const DEFAULT_MAX_ATTEMPTS = 5;
/** Parts uploading at once per upload; write() waits while this many are out (back-pressure). */
const PARTS_IN_FLIGHT = 2;
/** Segments of [a-z0-9._-] that do not start with a dot, as for the local-directory backend. */
const NAME = /^[a-z0-9_-][a-z0-9._-]*(?:\/[a-z0-9_-][a-z0-9._-]*)*$/;

export class S3BlobBackend implements BlobBackend {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly maxAttempts: number;
  /** Keys of this backend's uploads under way. */
  private readonly uploading = new Set<string>();

  constructor(options: S3BlobBackendOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (this.partSize < MIN_PART_SIZE) throw new Error(`partSize must be at least ${MIN_PART_SIZE} bytes (S3's minimum part)`);
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      maxAttempts: this.maxAttempts,
      // We send Content-MD5 ourselves; the SDK's default CRC32 headers are newer than RGW 16.2,
      // which ignores them (so they would verify nothing there).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // A store that accepts a connection and then says nothing must not hang a request forever:
      // the timeout turns into an error the retry strategy retries.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
  }

  create(name: string): BlobUpload {
    const key = this.keyOf(name);
    return trackUpload(this.uploading, key, new S3Upload(this.client, this.bucket, key, this.partSize));
  }

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    const key = this.keyOf(name);
    if (length <= 0) {
      if (!(await this.head(key))) throw notFound(`blob ${name} not found`);
      return Buffer.alloc(0);
    }
    const parts: Buffer[] = [];
    let got = 0;
    let end = offset + length; // exclusive; lowered to the blob's size once an answer tells it
    // A body that breaks or ends early is resumed from the byte it got to, a bounded number of times.
    for (let attempt = 1; offset + got < end; attempt++) {
      const start = offset + got;
      let answer;
      try {
        answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }));
      } catch (e) {
        if (statusOf(e) === 404) throw notFound(`blob ${name} not found`);
        if (statusOf(e) === 416) break; // the range starts at or past the end of the blob
        throw e;
      }
      const range = parseContentRange(answer.ContentRange);
      if (range && range.start !== start) throw new Error(`blob ${name}: asked for bytes from ${start}, got ${answer.ContentRange}`);
      try {
        if (!range) {
          // A 200 without Content-Range is the whole blob (a store may ignore a range, as S3
          // does for an empty object): cut the bytes asked for out of it.
          const whole = await collect(answer.Body as Readable);
          return whole.subarray(offset, offset + length);
        }
        end = Math.min(end, range.size);
        for await (const chunk of answer.Body as Readable) {
          parts.push(chunk as Buffer);
          got += (chunk as Buffer).length;
        }
      } catch (e) {
        if (attempt >= this.maxAttempts) throw e;
        continue;
      }
      if (offset + got < end && attempt >= this.maxAttempts) {
        throw new Error(`blob ${name}: the store sent ${got} of ${end - offset} bytes in ${attempt} tries`);
      }
    }
    return Buffer.concat(parts).subarray(0, end - offset);
  }

  async stat(name: string): Promise<BlobInfo | undefined> {
    return this.head(this.keyOf(name), name);
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken }));
      for (const object of page.Contents ?? []) {
        const name = object.Key!.slice(this.prefix.length);
        if (NAME.test(name)) yield { name, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(name: string): Promise<boolean> {
    const key = this.keyOf(name);
    // DeleteObject answers 204 whether or not the object was there: ask first.
    const existed = (await this.head(key)) !== undefined;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    return existed;
  }

  async abandonUploads(startedBefore: Date): Promise<number> {
    let abandoned = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker, UploadIdMarker }));
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || this.uploading.has(upload.Key) || (upload.Initiated ?? new Date(0)) >= startedBefore) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
        abandoned++;
      }
      [KeyMarker, UploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (KeyMarker);
    return abandoned;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private async head(key: string, name = key.slice(this.prefix.length)): Promise<BlobInfo | undefined> {
    try {
      const info = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { name, size: info.ContentLength ?? 0, modifiedAt: info.LastModified ?? new Date(0) };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  private keyOf(name: string): string {
    if (!NAME.test(name)) throw new Error(`not a blob name: ${JSON.stringify(name)}`);
    return this.prefix + name;
  }
}

/**
 * A blob on its way up: bytes gather in memory up to one part; the first full part turns the
 * upload into a multipart upload whose parts go up while the next one fills, at most
 * PARTS_IN_FLIGHT at once (write() waits for one to finish before it sends another), so an
 * upload holds at most PARTS_IN_FLIGHT + 1 parts of memory and one write. A blob that never
 * fills a part goes up in one PutObject at commit.
 */
class S3Upload implements BlobUpload {
  private buffered: Buffer[] = [];
  private bufferedSize = 0;
  private size = 0;
  /** The multipart upload, once a part was full (or end() was called on a non-empty blob). */
  private multipart: Promise<string> | undefined;
  private readonly parts: CompletedPart[] = [];
  private nextPartNumber = 1;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: Error | undefined;
  private ending: Promise<void> | undefined;
  private state: 'writing' | 'ended' | 'committing' | 'done' = 'writing';

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partSize: number,
  ) {}

  async write(data: Buffer): Promise<void> {
    if (this.state !== 'writing') throw new Error('write to an upload that was ended, committed or aborted');
    this.throwIfFailed();
    this.buffered.push(data);
    this.bufferedSize += data.length;
    this.size += data.length;
    while (this.bufferedSize >= this.partSize) {
      while (this.inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.inFlight);
      this.throwIfFailed();
      const all = Buffer.concat(this.buffered, this.bufferedSize);
      // Copied so that the part in flight does not keep the whole concatenation alive.
      const rest = Buffer.from(all.subarray(this.partSize));
      this.buffered = rest.length > 0 ? [rest] : [];
      this.bufferedSize = rest.length;
      this.sendPart(all.subarray(0, this.partSize));
    }
  }

  /**
   * No more bytes follow: sends what is buffered as the last part (starting a multipart upload
   * for a small blob, so that nothing becomes visible before commit) and releases the memory.
   */
  end(): Promise<void> {
    if (this.state === 'writing') {
      this.state = 'ended';
      if (this.bufferedSize > 0) this.sendPart(this.takeBuffered());
      this.ending = this.settle();
      this.ending.catch(() => undefined); // reported by commit()
    }
    return this.ending ?? Promise.reject(new Error('end of an upload that was committed or aborted'));
  }

  async commit(): Promise<void> {
    if (this.state !== 'writing' && this.state !== 'ended') throw new Error('commit of an upload that was committed or aborted');
    this.state = 'committing';
    try {
      if (!this.multipart) {
        // Never more than a part (end() would have started a multipart upload otherwise). Once
        // the store has checked its Content-MD5, the object holds exactly these bytes.
        const body = this.takeBuffered();
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key, Body: body, ContentLength: body.length, ContentMD5: md5(body) }));
        this.state = 'done';
        return;
      }
      if (this.bufferedSize > 0) this.sendPart(this.takeBuffered());
      await (this.ending ?? this.settle());
      const UploadId = await this.multipart;
      const Parts = [...this.parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
      // Its ETag is not used (RGW 16.2 returns it empty); the HeadObject below checks instead.
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId, MultipartUpload: { Parts } }));
    } catch (e) {
      this.state = 'done';
      await this.abortMultipart().catch(() => undefined); // the upload's own error is the one to report
      throw e;
    }
    this.state = 'done';
    // Each part was checked on its way in; this checks that the assembled object holds them all.
    const stored = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key }));
    if (stored.ContentLength !== this.size) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key }));
      throw corrupt(`object ${this.key} holds ${stored.ContentLength} bytes after its upload of ${this.size}: deleted`);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    this.buffered = [];
    this.bufferedSize = 0;
    await this.abortMultipart();
  }

  private takeBuffered(): Buffer {
    const body = Buffer.concat(this.buffered, this.bufferedSize);
    this.buffered = [];
    this.bufferedSize = 0;
    return body;
  }

  /** Starts uploading `body` as the next part; a failure is kept and thrown by the next call. */
  private sendPart(body: Buffer): void {
    this.multipart ??= this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key })).then((r) => r.UploadId!);
    const PartNumber = this.nextPartNumber++;
    const sending = this.uploadPart(PartNumber, body)
      .then(
        (part) => void this.parts.push(part),
        (e: unknown) => void (this.failure ??= e instanceof Error ? e : new Error(String(e))),
      )
      .finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
  }

  private async uploadPart(PartNumber: number, body: Buffer): Promise<CompletedPart> {
    const UploadId = await this.multipart!;
    const { ETag } = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId, PartNumber, Body: body, ContentLength: body.length, ContentMD5: md5(body) }));
    return { PartNumber, ETag };
  }

  /** Waits for every part in flight; throws the first failure. */
  private async settle(): Promise<void> {
    await Promise.all(this.inFlight);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async abortMultipart(): Promise<void> {
    if (!this.multipart) return;
    await Promise.all(this.inFlight);
    const UploadId = await this.multipart.catch(() => undefined);
    if (UploadId) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId }));
  }
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

/** `bytes 0-9/100` -> start 0, size 100 (undefined for a missing header or an unknown size). */
function parseContentRange(header: string | undefined): { start: number; size: number } | undefined {
  const match = header && /^bytes (\d+)-\d+\/(\d+)$/.exec(header);
  return match ? { start: Number(match[1]), size: Number(match[2]) } : undefined;
}

function statusOf(e: unknown): number | undefined {
  return e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
}

async function collect(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
