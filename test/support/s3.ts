/**
 * The S3 store tests run against, from the SNAPFORK_S3_* variables that scripts/dev/s3.sh prints
 * (read through loadConfig, as the server reads them); undefined when they are not set, and the
 * S3 tests skip saying so. Each test run works under a key prefix of its own and empties it after.
 */
import { randomUUID } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { loadConfig, type S3Config } from '../../src/config.js';

export const s3Config: S3Config | undefined = loadConfig(process.env).s3;

export const S3_SKIP_REASON = 'SNAPFORK_S3_ENDPOINT is not set; eval "$(scripts/dev/s3.sh)" starts a Ceph RGW on loopback';

/** A key prefix no other run uses, under the configured one. */
export function freshPrefix(config: S3Config, label: string): string {
  return `${config.prefix}test/${label}-${randomUUID()}/`;
}

/** The SNAPFORK_S3_* variables of a server keeping its packs under `prefix` of the configured bucket. */
export function s3Env(config: S3Config, prefix: string): Record<string, string> {
  return {
    SNAPFORK_S3_ENDPOINT: config.endpoint,
    SNAPFORK_S3_BUCKET: config.bucket,
    SNAPFORK_S3_REGION: config.region,
    SNAPFORK_S3_ACCESS_KEY_ID: config.accessKeyId,
    SNAPFORK_S3_SECRET_ACCESS_KEY: config.secretAccessKey,
    SNAPFORK_S3_FORCE_PATH_STYLE: String(config.forcePathStyle),
    SNAPFORK_S3_PREFIX: prefix,
  };
}

/** A plain SDK client on the store, for what the tests check behind the backend's back. */
export function rawClient(config: S3Config, endpoint = config.endpoint): S3Client {
  return new S3Client({
    endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
  });
}

/** Keys of unfinished multipart uploads under `prefix`. */
export async function pendingUploads(client: S3Client, bucket: string, prefix: string): Promise<{ key: string; uploadId: string }[]> {
  const found: { key: string; uploadId: string }[] = [];
  let KeyMarker: string | undefined;
  let UploadIdMarker: string | undefined;
  do {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker, UploadIdMarker }));
    for (const u of page.Uploads ?? []) found.push({ key: u.Key!, uploadId: u.UploadId! });
    ({ NextKeyMarker: KeyMarker, NextUploadIdMarker: UploadIdMarker } = page);
    if (!page.IsTruncated) break;
  } while (KeyMarker);
  return found;
}

/** Deletes every object and aborts every unfinished upload under `prefix`. */
export async function emptyPrefix(client: S3Client, bucket: string, prefix: string): Promise<void> {
  for (const { key, uploadId } of await pendingUploads(client, bucket, prefix)) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
  }
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) return;
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
}
